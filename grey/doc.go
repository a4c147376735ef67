// Package grey keeps spam out the way upas smtpd does: greylisting (smtpd
// -g) with its whitelist, and the lib/blocked classification that upas
// served through ratfs. It implements greylisting as RFC 6647 describes it
// and knows nothing of SMTP: the server engine asks it questions at DATA
// and turns the answers into replies.
//
// # Greylisting
//
// Most spam is sent by software that does not retry; real mail servers
// retry a temporary failure. So a message from a client we do not know is
// refused with "451 4.7.1 please try again soon from the same IP." and the
// attempt is remembered; when the same client comes back for the same
// recipient at least 5 minutes and at most 14 hours later (greywindow),
// the message passes and the client's address is added to the whitelist,
// whose clients pass at once from then on. The wide window is upas's: big
// senders retry from a pool of addresses and may take hours to come back
// from the same one. Clients that are trusted (ournets) or authenticated
// are never greylisted: the server does not ask.
//
// An attempt is a triplet, (our address, the client's address, the
// recipient), kept as an empty file whose modification time is the first
// attempt:
//
//	<root>/grey/tmp/<local-ip>/<remote-key>/<rcpt>
//
// remote-key is the client's address, or with greyprefix the network
// address of its pool: with greyprefix 24 64, 192.0.2.7 is kept under
// 192.0.2.0 and 2001:db8:1:2::99 under 2001:db8:1:2::, so that a sender's
// pool of addresses counts as one client. <rcpt> is the whole recipient
// (upas kept only the user name after the last !), lower-cased, with every
// byte other than letters, digits and !@.+-_= written %XX, a leading dot
// too, and names over 128 bytes cut and ended with ~ and a hash, so a
// recipient can never name a file outside its directory. The sender is not
// part of the key: senders that change the envelope sender on every
// attempt (VERP, SRS) would never pass.
//
// The first attempt makes the file and fails. A retry within the window
// passes. A retry too soon fails and does not move the clock (upas
// refreshed the time on every attempt, which keeps out for ever a sender
// that retries every minute; postgrey keeps the first time, and so do
// we). A retry after the window, or a file from the future (the clock went
// back), starts the clock again. If any recipient of the message passes,
// the message passes, and the client's address (its pool's network with
// greyprefix) is appended to the whitelist as "ip name", name coming from
// a reverse lookup when the daemon provides one, as upas appended the ndb
// name. Every decision is logged with upas's words.
//
// Triplet files can be removed at will: at worst they cause a few extra
// retries. Expire (or Sweep, in the background) removes those whose first
// attempt is older than the end of the window, and the directories left
// empty. The number of triplets is bounded, in all (Settings.MaxTriplets),
// per client (PerClient: its pool, an IPv6 /64 at least) and per message
// (PerMessage, its first new recipients): past a bound, clients are
// refused without being registered, so that a flood of made-up recipients
// (bob+1, bob+2, ...) can neither fill the disk nor, from one client, the
// greylist, which would lock every other client out; tally has the
// reasons and the counting. When the triplet files cannot be
// written (disk full, permissions) the greylist fails open: it logs the
// error and lets the message through, because greylisting only delays
// spam, and a broken disk must not turn away all mail for days
// (Settings.FailClosed, greyfail closed, refuses such messages instead).
//
// # Stores
//
// The triplets and the whitelist are kept by a Store: the files above
// (FileStore) for one host, or Redis (package grey/redisstore) for the MX
// hosts of a domain together, with the same algorithm, bounds and log;
// the Greylist asks the store for all the triplets of a Check at once,
// one round trip for a store across the network. A store that cannot
// answer (Redis unreachable) is treated as a broken disk is.
//
// # The whitelist
//
// <root>/grey/whitelist is plain text, append-only: one entry a line, an
// address or network and an optional name after a space or tab, # comment
// lines, blank lines ignored:
//
//	# our partners
//	192.0.2.0/24 partner.example
//	198.51.100.7 mx1.example.net
//	2001:db8::/32
//
// A bare address is that one host, as in 9front (Bell Labs took a bare
// IPv4 address as its /24); a.b and a.b.c are /16 and /24, as in
// smtpd.conf's ournets. A missing file whitelists nobody. Malformed lines
// are logged and skipped. Whitelist has the details: the index of
// sorted, merged ranges that answers in a few hundred nanoseconds with a
// million entries, the reading of changes made by others, and the
// locking between writers.
//
// # lib/blocked
//
// <root>/lib/blocked says what to do with clients and senders: allow,
// block, deny, dial (a dial-up port) or delay, for addresses and networks
// and for sender patterns, with ratfs's semantics, read directly (no
// ratfs). Blocked has the grammar and the order of the verdicts; the
// server engine turns them into upas's replies.
package grey
