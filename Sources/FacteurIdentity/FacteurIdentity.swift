// FacteurIdentity: accounts' credentials, shared by SMTP submission, IMAP and POP3.
//
// - `PasswordHasher`: scrypt (RFC 7914) password hashes stored as PHC strings.
// - `SCRAMCredentials`: SCRAM-SHA-256 keys (RFC 5802, RFC 7677) in RFC 5803's stored form.
// - `Credentials`: makes and checks both from one password, after SASLprep (RFC 4013).
// - `SASLMechanism`: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and
//   SCRAM-SHA-256 as pure state machines: bytes in, steps out, no I/O.
// - `Authenticator`: drives a mechanism for a protocol layer (lookup, slow KDF off the
//   caller's executor, throttling), so SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH
//   share one loop.
// - `AuthThrottle` / `SharedAuthThrottle`: failed attempts per client and per account,
//   delays and lockouts.
// - `BlockingWorkPool`: where the slow KDF runs, bounded in concurrency and queue length.
//
// One `Authenticator` (one `SASLOptions.unknownUserSecret`) should serve every protocol:
// with different secrets, an unknown user's fake SCRAM salt would differ between SMTP and
// IMAP while a real user's does not, which tells the two apart.
