"""Work no request waits for: the stream functions' halves of enforcement (ending sessions in bulk)
and of the compliance recount, and the daily refresh of the FIDO metadata."""
