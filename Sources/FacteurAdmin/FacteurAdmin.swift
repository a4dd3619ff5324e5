// FacteurAdmin: Facteur's HTTP listeners. The public one serves what the outside world fetches
// over HTTP(S): MTA-STS policies (RFC 8461 §3.2) and ACME HTTP-01 answers (RFC 8555 §8.3).
