// FacteurNet
