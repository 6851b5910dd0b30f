"""What a Z39.50 request means here: catalogue service, Bib-1 to plan, retrieval records."""
