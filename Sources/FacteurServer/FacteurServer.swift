// FacteurServer
