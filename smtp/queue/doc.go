// Package queue is smtpfs's durable outbound queue and its runner: nothing
// acknowledged is ever lost.
//
// Put (the SMTP server's DATA, cmd/smtpd through OpenWriter) and Submit
// (the 9P queue file) store a message as two files in the queue
// directory, <id>.msg and a plain-text <id>.env, and return only once
// both are on disk and fsynced; concurrent callers share the syncs (group
// commit). Open recovers the directory after a crash: what dead writers
// left half-written is removed and never loaded; every whole record is
// delivered, again if a crash cut its delivery short (twice at worst,
// never lost). While the file system has less free space than
// Settings.MinFree, Put and Submit write nothing and refuse with
// ErrInsufficientStorage, a temporary 452 4.3.1. smtpfs(8), "The queue",
// documents the format for people.
//
// Run delivers: one session per destination (recipient domain, address
// literal, or the smarthost) carrying all its recipients, through a
// Deliverer (the smtp client engine) and, for local users, a Local; at
// most Settings.Deliveries at once, and Settings.DestConcurrency to one
// destination: the others' messages pass a destination that is full, so
// a slow one never holds every session. A whole session is bounded by
// Settings.DeliveryTimeout; one cut by it is a temporary failure.
// Temporary failures are retried on the
// Settings.Backoff schedule with jitter; a destination that failed as a
// whole rests for the first step, as upas runq skips a system that said
// Retry. Permanent failures, and recipients still failing after
// Settings.Lifetime, are bounced to the sender; the null sender is never
// bounced. Kick, Retry, Hold, Release and Delete are the operator's
// controls; List and Stats feed the 9P queue and stats files.
//
// RFCs: 5321 (§4.5.4.1 retry strategy, §4.5.5 null reverse-path,
// §4.5.3.1 limits), 3464 (delivery status notifications), 6522
// (multipart/report), 3463 (enhanced status codes), 3834
// (Auto-Submitted), 5322 (the header of submitted messages).
package queue
