package tlspolicy

// SignedMX reports whether host was found in the domain's MX RRset as the
// validating resolver vouched for it (the AD bit), or is the domain itself
// under a signed denial of MX records. RFC 8689 §4.2.1 accepts such a
// host, with a certificate verified for its name, for REQUIRETLS. It is
// false when the domain's level did not ask the validating resolver
// (none, may, encrypt, verify, mta-sts) or there is none.
func (p *DomainPolicy) SignedMX(host string) bool {
	h, _ := normalize(host)
	return p.secureMX[h]
}
