"""The SRU service over the catalogue: CQL to plans, record schemas, result sets, explain."""
