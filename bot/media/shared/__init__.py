"""Shared media: encode once per process (or read a pre-encoded file once) and fan the packets out
to many bots' tracks."""
