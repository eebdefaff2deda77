"""wirecap proxy: an HTTPS CONNECT proxy with RFC 7616 digest auth that records every
proxied connection into its own capture file and can mail it to the user.

Pure parts (no I/O): `head` (request heads, responses), `digest` (the verifier),
`credentials` (ccpasswd text), `ratelimit`, `summary`, `spool` naming, `mail`
message building. Shell parts: `server` (sockets), `recorder` (captures),
`mailer` (sendmail/SMTP), the spool's file operations.
"""
