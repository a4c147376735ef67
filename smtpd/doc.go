// Package smtpd is the SMTP server engine of smtpfs: upas smtpd rebuilt,
// safe and modern. One goroutine serves one session; the caller plugs in
// the outside world (configuration, queue, greylist, block list, DNS, log,
// clock) through the fields of Server and the small interfaces declared
// here. The engine never imports the queue, the greylist or the 9P tree.
//
// RFCs: 5321 (SMTP), 1870 (SIZE), 2920 (PIPELINING), 6152 (8BITMIME),
// 2034 and 3463 (enhanced status codes), 3207 (STARTTLS), 4954 (AUTH),
// 4616 (PLAIN), 2195 (CRAM-MD5), 3848 (ESMTPS/ESMTPA in Received:),
// 5322 (the header fields we add), 3030 (CHUNKING: bdat.go), 6409 and
// 8314 (submission, on listeners of that role: submit.go).
//
// # Policy
//
// A client is trusted when its address is in ournets or it authenticated.
// A trusted client may send anywhere and skips every spam check. With
// norelay on (the default), an untrusted client may only send to
// recipients we deliver ourselves: a domain of ours (dotless,
// defaultdomain, hostname, ourdomains) or an address literal of the
// address it called, with a plain local part. Bang paths, the percent
// hack, quoted local parts hiding '@', '!' or '%', and source routes to
// other hosts are refused with upas's "we don't relay" reply. upas's
// loopback form user@[] (or []!user) is allowed: it is queued for delivery
// back to the client's own address. What an untrusted client queues is
// queued from the null sender: its sender is forged at will, and a bounce
// to it would reflect the client's text to a victim.
//
// At DATA, for an untrusted client, in this order: the sender domain check
// (verifysenderdom), the lib/blocked verdict (Classifier), the greylist
// (Greylister). A Block or Delay verdict reads the message, saves it under
// queue.dump when saveblockedmsg is on, and refuses it; Dial refuses the
// rest of the session; Deny refuses at once; a greylist miss answers 451
// and hangs up. As in upas, a verdict is waived when every recipient is a
// local user with a file box/<user>/nospamfiltering.
//
// 250 after DATA means the message is safe: local recipients are in their
// Maildir (file and directory fsynced), remote ones are in the queue (Put
// returned), or the mailer exited 0.
//
// # Safety
//
// DATA ends only on CRLF.CRLF. A bare CR or LF anywhere in a message makes
// it fail with a 554 after the real CRLF.CRLF has been read, so the
// protocol stays in step and nothing can be smuggled. A command line may end
// in a bare LF (a command line is a command line whatever ends it; only
// DATA can smuggle), but a CR inside it, a NUL or any other control, or
// an 8-bit byte outside the well-formed UTF-8 that MAIL and RCPT may
// carry for SMTPUTF8 (utf8.go), gets 500. Bytes pipelined after STARTTLS close the session
// (CVE-2011-0411). Every line, path, recipient list, header and message is
// bounded; every read and every write has a deadline (RFC 5321 §4.5.3.2);
// a session that keeps erring is closed after maxerrors, and an untrusted
// one that sends maxJunk commands moving no mail after that. The spools of
// all sessions share one memory budget; sessions stop short of the file
// descriptor limit; maxperip counts an IPv6 client by its /64; AUTH
// failures are limited per client across sessions, and so is what an
// untrusted client sends to its own address (user@[], loopback.go), per
// message too; mail is refused while
// the mail root has less than minfree. Delays (tarpit) are timers in the
// session's own goroutine, so they slow nobody else. A panic ends its own
// session, not the server.
package smtpd
