package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"os"
	"strings"
	"time"

	"smtpfs/smtp"
)

// A report is one recipient's outcome in a DSN.
type report struct {
	r       *rcpt
	err     error
	expired bool // failed because its lifetime is over
}

// maxDSNHeader bounds the original header returned in a DSN.
const maxDSNHeader = 64 << 10

// sendDSN queues a delivery status notification (RFC 3464) about the
// recipients rs of e for its sender: action is "failed" or "delayed".
func (q *Queue) sendDSN(e *entry, set Settings, now time.Time, action string, rs []report) error {
	hdr, err := q.st.header(e.id)
	if err != nil {
		return err
	}
	msg := buildDSN(dsn{host: set.Hostname, sender: e.from, arrived: e.arrived, now: now,
		action: action, reports: rs, header: hdr, until: e.arrived.Add(set.Lifetime)})
	id, err := q.put(context.Background(), smtp.Mail{Rcpts: []string{e.from}}, q.signed(msg), false)
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.n.DSNs++
	q.mu.Unlock()
	q.log.Printf("dsn %s for %s to %s: %s", id, e.id, e.from, action)
	return nil
}

// header returns the header of message id, up to its empty line, at most
// maxDSNHeader bytes cut at a line end.
func (s *store) header(id string) ([]byte, error) {
	f, err := os.Open(s.path(id, ".msg"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	r := bufio.NewReader(io.LimitReader(f, maxDSNHeader))
	for {
		line, err := r.ReadBytes('\n')
		if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
			return b.Bytes(), nil // a cut last line is dropped
		}
		b.Write(line)
	}
}

// A dsn is what goes into a DSN message.
type dsn struct {
	host, sender string
	arrived, now time.Time
	action       string // failed, delayed
	reports      []report
	header       []byte // the original header
	until        time.Time
}

// buildDSN makes the DSN message: RFC 6522 multipart/report with a part
// for people quoting the replies, the RFC 3464 message/delivery-status
// part, and the original header (text/rfc822-headers). From
// MAILER-DAEMON@host; the caller queues it with the null sender.
func buildDSN(d dsn) []byte {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	subject := "Undelivered mail returned to sender"
	if d.action == "delayed" {
		subject = "Delayed mail (still being retried)"
	}
	hf := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hf("From", "Mail Delivery System <MAILER-DAEMON@"+d.host+">")
	hf("To", "<"+d.sender+">")
	hf("Subject", subject)
	hf("Date", d.now.Format(time.RFC1123Z))
	hf("Message-ID", "<"+newID(d.now)+"@"+d.host+">")
	hf("Auto-Submitted", "auto-replied") // RFC 3834 §5
	hf("MIME-Version", "1.0")
	hf("Content-Type", "multipart/report; report-type=delivery-status;\r\n\tboundary=\""+mw.Boundary()+"\"")
	b.WriteString("\r\n")

	w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}})
	io.WriteString(w, d.human())

	w, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/delivery-status"}})
	io.WriteString(w, d.status())

	if len(d.header) > 0 {
		w, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/rfc822-headers"}})
		w.Write(d.header)
	}
	mw.Close()
	return b.Bytes()
}

// human is the first part: what happened, in words, with the replies.
func (d dsn) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", d.host)
	if d.action == "delayed" {
		fmt.Fprintf(&b, "Your message has not been delivered yet to the recipients below.\r\n"+
			"The mail system will keep trying until %s;\r\nyou need not send it again.\r\n\r\n", d.until.Format(time.RFC1123Z))
	} else {
		b.WriteString("Your message could not be delivered to the recipients below,\r\n" +
			"and the mail system has given up.\r\n\r\n")
	}
	for _, r := range d.reports {
		fmt.Fprintf(&b, "<%s>:\r\n    ", r.r.addr)
		if r.expired {
			b.WriteString("still undelivered after the message's lifetime; the last reply was\r\n    ")
		}
		b.WriteString(errText(r.err))
		if m := remoteMTA(r.err); m != "" {
			fmt.Fprintf(&b, "\r\n    (from %s)", m)
		}
		b.WriteString("\r\n\r\n")
	}
	b.WriteString("The header of your message is attached.\r\n")
	return b.String()
}

// status is the message/delivery-status part (RFC 3464 §2).
func (d dsn) status() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", d.host)
	fmt.Fprintf(&b, "Arrival-Date: %s\r\n", d.arrived.Format(time.RFC1123Z))
	for _, r := range d.reports {
		status, diag := statusOf(r.err, r.expired)
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", r.r.addr)
		fmt.Fprintf(&b, "Action: %s\r\n", d.action)
		fmt.Fprintf(&b, "Status: %s\r\n", status)
		if m := remoteMTA(r.err); m != "" {
			fmt.Fprintf(&b, "Remote-MTA: dns; %s\r\n", m)
		}
		fmt.Fprintf(&b, "Diagnostic-Code: %s\r\n", diag)
		fmt.Fprintf(&b, "Last-Attempt-Date: %s\r\n", d.now.Format(time.RFC1123Z))
		if d.action == "delayed" {
			fmt.Fprintf(&b, "Will-Retry-Until: %s\r\n", d.until.Format(time.RFC1123Z))
		}
	}
	return b.String()
}

// statusOf returns the Status (RFC 3463) and Diagnostic-Code (RFC 3464
// §2.3.6) of a failure: the reply's enhanced code; for a DNS failure
// 5.1.2 (no such destination system) or 4.4.3 (directory server
// failure); else the class alone; 4.4.7 (delivery time expired) for a
// recipient whose lifetime is over.
func statusOf(err error, expired bool) (status, diag string) {
	var r *smtp.Reply
	var d *smtp.DNSError
	switch {
	case errors.As(err, &r):
		status, diag = r.Enh, "smtp; "+errText(r)
	case errors.As(err, &d):
		status, diag = "4.4.3", "X-smtpfs; "+errText(err)
		if d.NotFound {
			status = "5.1.2"
		}
	default:
		diag = "X-smtpfs; " + errText(err)
	}
	if status == "" {
		status = "5.0.0"
		if smtp.IsTemporary(err) {
			status = "4.0.0"
		}
	}
	if expired {
		status = "4.4.7"
	}
	return status, diag
}

// remoteMTA returns the server that gave err, when err says.
func remoteMTA(err error) string {
	var m interface{ RemoteMTA() string }
	if errors.As(err, &m) {
		return clean(m.RemoteMTA())
	}
	return ""
}
