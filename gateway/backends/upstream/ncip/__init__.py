"""The upstream NCIP circulation backend (kind ``ncip``): the library's own NCIP responder
behind :class:`ICirculation`, in its dialect, exactly once across both legs."""
