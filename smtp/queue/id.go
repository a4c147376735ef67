package queue

import (
	"crypto/rand"
	"time"
)

// IDs are 15 characters of [0-9a-z]: 8 of the arrival time in milliseconds
// since 1970 (base 36, enough until the year 5188), then 7 random ones
// (36^7, about 7.8e10 per millisecond), so that they are unique across
// processes sharing the directory, sort by arrival in `ls`, and stay
// distinct on a case-insensitive file system.
const (
	idTime = 8
	idRand = 7
	idLen  = idTime + idRand
	digits = "0123456789abcdefghijklmnopqrstuvwxyz"
)

// newID returns a fresh message id for time t.
func newID(t time.Time) string {
	var b [idLen]byte
	ms := uint64(t.UnixMilli())
	for i := idTime - 1; i >= 0; i-- {
		b[i] = digits[ms%36]
		ms /= 36
	}
	copy(b[idTime:], nonce())
	return string(b[:])
}

// nonce returns idRand random characters of [0-9a-z].
func nonce() string {
	var r [idRand]byte
	rand.Read(r[:])
	for i, c := range r {
		r[i] = digits[int(c)%36]
	}
	return string(r[:])
}

// validID reports whether s has the shape of an id, so that it can be
// used in a file name.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
