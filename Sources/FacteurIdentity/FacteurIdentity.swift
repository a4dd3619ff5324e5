// FacteurIdentity
