"""Where circuits run: the backend per ``backend.kind``, its parse-time checks, credentials, the IBM
connection, engines, ISA pubs and error mitigation."""
