// FacteurSMTP
