// Package tlspolicy decides how a message may leave for a destination:
// with or without TLS, to which MX hosts, and how each host's certificate
// is checked. It follows MTA-STS (RFC 8461), DANE for SMTP (RFC 7672, on
// RFC 6698 and RFC 7671) and per-destination levels in the manner of
// Postfix's smtp_tls_policy_maps. The smtp client asks it per destination
// and the queue shows its reasons; it imports neither.
//
// The policy, per destination domain:
//
//   - A tlspolicy line names the level: none (no TLS), may (TLS when
//     offered, any certificate), encrypt (TLS required, any certificate),
//     verify (TLS required, the certificate verified by the CAs for the MX
//     host name), dane (DANE where it applies, else may: Postfix's
//     opportunistic DANE) or mta-sts (the domain's MTA-STS policy where
//     published, else may).
//   - A domain without one gets what a modern MTA does: DANE for each MX
//     host it applies to, else the MTA-STS policy, else may. DANE wins
//     over MTA-STS where both apply (RFC 8461 §2).
//   - DANE needs a validating resolver named by daneresolver; its AD bit
//     is the only DNSSEC status believed, and without one there is no
//     DANE. It applies to an MX host found in a signed MX RRset, with
//     signed addresses and a signed TLSA RRset at _25._tcp.<host> (RFC
//     7672 §2.2). Usable records (DANE-TA or DANE-EE, §3.1) make TLS and a
//     match mandatory; records that are all unusable make TLS mandatory,
//     without authentication (§2.2). A DNSSEC lookup that fails makes the
//     host unusable for now (§2.1.1), and a failed MX lookup the domain.
//   - MTA-STS: the TXT record _mta-sts.<domain> says a policy exists and
//     its id; the policy comes over HTTPS from mta-sts.<domain>, verified,
//     without redirects, at most 64 KiB of text/plain (§3), and is cached
//     for its max_age (§5.1, see cache.go). Under mode enforce only MX
//     hosts matching its mx patterns are used, over TLS, with a
//     certificate verified for the MX name (§4); under testing nothing is
//     refused and the findings are logged; mode none is no policy.
//   - Every refusal is a temporary *Error with a one-line reason: the
//     queue retries the message until its lifetime ends and then bounces
//     it with that reason.
//
// Use: an Engine holds the configuration; Resolve (or ForDomain, then
// ForMX per host) gives each MX host's MXPolicy, whose TLS field says
// whether STARTTLS is needed and whose Verify method goes in
// tls.Config.VerifyConnection.
//
// Left out: TLS reporting (RFC 8460), CNAME expansion of TLSA base domains
// (RFC 7672 §2.2.2: TLSA records are looked up at the MX name only), DANE
// for hosts that are not MX hosts of the domain (a smarthost gets the
// domain's level without DANE), and DANE-TA records that match the
// server's own certificate.
package tlspolicy
