"""What an NCIP request means here: parse, attribute to a peer, dispatch, the workflows."""
