// Package mailauth checks and makes the authentication of mail: SPF (RFC
// 7208) at MAIL, DKIM (RFC 6376, RFC 8301, Ed25519 by RFC 8463) and DMARC
// (RFC 7489) after DATA, the Authentication-Results field that records
// them (RFC 8601), and DKIM signatures on outgoing mail, with the keys of
// lib/dkim. It is an engine: it knows nothing of smtpd, the queue or the
// file tree, and asks DNS through a Resolver it declares.
//
// Wiring: cmd makes one Checker, on a Cache in front of a DNS (the
// resolver verb), with the host name; smtpd calls CheckSPF at MAIL and
// CheckMessage after DATA, removes forged fields with StripAuthResults,
// adds AuthResults, and counts the Verdict in Counters. The outgoing path
// asks a Signer (on a KeyStore opened on lib/dkim, with Select from the
// dkim verb) for the DKIM-Signature fields to put on top of a message
// before it is queued; KeyStore.DNSRecords is the text of the tree's
// dkim/<domain> file, and NewKey makes a key for "dkim newkey".
//
// SPF is written here, on miekg/dns, rather than taken from a library.
// A library would have to ask DNS through our Resolver, for the cache and
// the tests, and pass the openspf RFC 7208 suite in full; one that asks
// net.Resolver cannot: that resolver does not tell NXDOMAIN from an empty
// answer (the void-lookup limit of §4.6.4 needs both, and "none" needs the
// first), gives no TTLs, and refuses names that SPF macros make (a space
// from %{l}, a '%' from %%). This one passes all 203 cases of the suite
// (testdata/rfc7208-tests.yml), run by TestSPFSuite.
//
// DKIM signing and verification are go-msgauth's; the key lookups go
// through our Resolver and the header handling (bounds, the tags
// reported) is ours. DMARC and Authentication-Results are small enough to
// be ours too: go-msgauth's parsers are strict where RFC 7489 §6.3 asks to
// ignore errors, and its Authentication-Results parser does not skip
// comments, which stripping forgeries needs.
//
// Every input is bounded: a header read for a check is at most 1 MiB;
// SPF does at most 10 DNS-querying terms, 2 void lookups and 10 names per
// mx or ptr, in at most 20 s (RFC 7208 §4.6.4); DKIM verifies at most 5
// signatures per message with its lookups bounded by 20 s; DMARC looks up
// at most 5 author domains; the cache keeps 10,000 answers of about 10 MB
// at most; an SPF explanation is at most 512 octets of printable ASCII.
package mailauth
