//! gslb-dns
