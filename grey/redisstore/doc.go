// Package redisstore keeps the greylist's state in Redis, so that every
// MX host of a domain shares it (greystore redis://... in smtpd.conf): a
// client greylisted at one host passes its retry at another; an address
// whitelisted at one passes at all; an AUTH guesser locked out at one is
// locked out at all. It implements grey.Store, and an AuthLimiter for the
// SMTP server on the same connections. Queues and Maildirs stay each
// host's own.
//
// # What is kept, and how
//
// Triplets (triplets.go): a sorted set per client (its pool, at least an
// IPv6 /64) of "<pool>/<rcpt key>" scored by the first attempt, without
// our address, so that a retry at any of the MX hosts counts;
// the clients in a sorted set scored by when their last triplet leaves
// the window, their counts in a hash and the total in a number, so that
// greytriplets, greyperclient and greypermsg hold across hosts. One Lua
// script answers a whole Check, atomically, in one round trip, and every
// client's set expires by itself (PEXPIRE) two hours after its newest
// triplet leaves the window; Checks and Expire count the departed off the
// total first. A sender domain that passed SPF (grey.Query.Sender) has a
// sorted set of its own, smtpfs:d:<domain>, of recipients' keys, which
// every client of the domain looks up; each triplet in it is also a
// member "@<domain>/<rcpt key>" of the set of the client that registered
// it, so that greyperclient, greytriplets and expiry count it as that
// client's.
//
// The whitelist (whitelist.go): the lines in a list (comments and order
// kept, so that `cat whitelist` reads the same on every host), the entries
// in a set, a size and an epoch, changes announced on a channel; each
// daemon mirrors it in a local index (grey.Index) for lookups from
// memory, and a miss asks the set in the Check's own script, so an
// address appended on one host passes on every other at once. Appends are
// confirmed by Redis before the write that made them returns.
//
// AUTH failures (auth.go): a hash per client, expiring by itself when its
// window and lockout are over.
//
// # Faults
//
// Every call is bounded: Timeout (250 ms) for what a session asks,
// AdminTimeout (5 s) for what an operator does. A call that finds Redis
// unreachable, or unable to serve (LOADING, READONLY after a failover),
// takes the store down: the store logs it once, answers every call at
// once with ErrDown (the greylist then decides by greyfail; AUTH goes on
// without the count; the local whitelist index still answers), and
// probes Redis with backoff (50 ms doubling to 5 s) until it answers,
// then logs that it is back and reads the whitelist again. No retries on
// a session's behalf: a retry would double its wait.
//
// # Limits
//
// Keys are in database N of the URL, named smtpfs:*; several mail systems
// share one Redis by database number. The scripts touch keys they derive
// (a client's set from its name), so Redis Cluster is not supported; a
// single Redis, or one with replicas under Sentinel, is. Redis 6.2 or
// later (tested with 7.0): the import uses LPOS.
package redisstore
