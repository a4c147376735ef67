package queue

import "time"

// An Item is one queued message as the 9P queue file lists it: a snapshot,
// safe to keep after the queue has moved on.
type Item struct {
	ID      string
	From    string    // envelope sender, "" for <>
	Rcpts   []string  // recipients not yet delivered nor bounced
	Size    int64     // bytes of the message
	Arrived time.Time // when it was queued
	Tries   int       // delivery attempts so far (the most of any recipient)
	Next    time.Time // next attempt (the soonest of any recipient); zero when held
	Held    bool      // held by the operator: no attempts until released
	LastErr string    // the last failure, "" if none
	Active  bool      // a delivery attempt is under way
}
