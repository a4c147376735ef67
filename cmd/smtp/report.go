package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"smtpfs/internal/errquote"
	"smtpfs/smtp"
)

// The upas texts of the two failures; runq (and any script) looks for
// "Retry" to keep a message.
const (
	textRetry     = "Retry, Temporary Failure"
	textPermanent = "Permanent Failure"
)

// report writes what went wrong, upas's way (upas.md §4.6), one entry per
// line (upas ran the per-recipient entries together), and returns the exit
// status:
//
//	<date> connect to <destaddr> (<mx> <ip:port>) <phase>:
//	<the server's reply, or the error>
//	Permanent Failure
//
// or, when recipients were refused,
//
//	<date> connect to <destaddr> (<mx> <ip:port>) rcptto:
//	  mail to <rcpt> failed: <reply>
//	Retry, Temporary Failure
//
// The status is 2 (Retry) when every failure was temporary and nobody got
// the message, else 1: when some recipients have it, trying the whole
// message again would send it to them twice, so a partial failure is
// permanent, as in upas, and the sender hears of it. A ping sends nothing,
// so for it only the refusals count.
func report(w io.Writer, now time.Time, dest string, rcpts []string, rcptErrs []error, err error, ping bool) int {
	date := now.Format("Jan _2 15:04:05")
	if err != nil {
		var e *smtp.Error
		if errors.As(err, &e) {
			fmt.Fprintf(w, "%s connect to %s%s %s:\n%s\n", date, dest, where(e, dest), e.Phase, cause(e.Err))
		} else {
			fmt.Fprintf(w, "%s connect to %s: %s\n", date, dest, cause(err))
		}
		for i, re := range rcptErrs {
			if re != nil && re != err {
				fmt.Fprintf(w, "  mail to %s failed: %s\n", rcpts[i], strings.ReplaceAll(cause(re), "\n", " / "))
			}
		}
		return status(w, smtp.IsTemporary(err))
	}
	failed, temporary := 0, true
	for i, re := range rcptErrs {
		if re == nil {
			continue
		}
		if failed == 0 {
			var e *smtp.Error
			errors.As(re, &e)
			fmt.Fprintf(w, "%s connect to %s%s rcptto:\n", date, dest, where(e, dest))
		}
		failed++
		temporary = temporary && smtp.IsTemporary(re)
		fmt.Fprintf(w, "  mail to %s failed: %s\n", rcpts[i], strings.ReplaceAll(cause(re), "\n", " / "))
	}
	switch {
	case failed == 0:
		return exitOK
	case failed < len(rcpts) && temporary && !ping:
		fmt.Fprintf(w, "%d of %d recipients have the message; not retrying the others\n", len(rcpts)-failed, len(rcpts))
		return status(w, false)
	}
	return status(w, temporary)
}

// where is " (mx ip:port)" for an error that has them.
func where(e *smtp.Error, dest string) string {
	switch {
	case e == nil || e.Host == "" || e.Host == dest && e.Addr == "":
		return ""
	case e.Addr == "":
		return " (" + e.Host + ")"
	}
	return " (" + e.Host + " " + e.Addr + ")"
}

// cause is the server's reply as it was sent, or the error. It goes to a
// terminal, so each of its lines has its control characters escaped
// (errquote.Escape): the client escapes replies as it reads them, and
// this holds for whatever else an error may quote of the peer.
func cause(err error) string {
	var r *smtp.Reply
	if errors.As(err, &r) {
		lines := strings.Split(strings.TrimSuffix(string(r.Wire()), "\r\n"), "\r\n")
		for i, l := range lines {
			lines[i] = errquote.Escape(l)
		}
		return strings.Join(lines, "\n")
	}
	var e *smtp.Error
	if errors.As(err, &e) {
		return errquote.Escape(e.Err.Error())
	}
	return errquote.Escape(err.Error())
}

// status writes the upas status line and returns the exit status.
func status(w io.Writer, temporary bool) int {
	if temporary {
		fmt.Fprintln(w, textRetry)
		return exitRetry
	}
	fmt.Fprintln(w, textPermanent)
	return exitPermanent
}

// failed reports an error that came before any network work (a bad dial
// string, a missing password, a bad thumbprint file): permanent, unless
// the error says otherwise.
func failed(w io.Writer, err error) int {
	fmt.Fprintf(w, "smtp: %s\n", cause(err))
	var t interface{ Temporary() bool }
	return status(w, errors.As(err, &t) && t.Temporary())
}
