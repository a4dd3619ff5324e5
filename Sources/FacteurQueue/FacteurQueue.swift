// FacteurQueue: outbound delivery. The durable queue lives in FacteurStore
// (SQLiteMailStore+Queue.swift); here are the SMTP client (RFC 5321 client side, RFC 3207
// STARTTLS, RFC 2920 PIPELINING, RFC 3030 CHUNKING, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8,
// RFC 1870 SIZE), MX routing (RFC 5321 §5.1, RFC 7505 null MX), the delivery worker with its
// retry schedule, and delivery status notifications (RFC 3461, RFC 3464).

@_exported import FacteurStore
