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
	"slices"
	"strings"
	"time"

	"smtpfs/smtp"
)

// A report is one recipient's outcome in a DSN.
type report struct {
	r       *rcpt
	err     error
	expired bool // failed because its lifetime is over
	// action is the recipient's Action (RFC 3464 §2.3.3): failed,
	// delayed, delivered or relayed.
	action string
}

// Bounds on what a DSN returns of the original message.
const (
	// maxDSNHeader bounds the original header returned in a DSN.
	maxDSNHeader = 64 << 10
	// maxDSNFull bounds the whole message a failure DSN returns for
	// RET=FULL; a bigger one gets its header only.
	maxDSNFull = 1 << 20
)

// The DSN policy (RFC 3461, for the parameters the message came with):
//
//   - a recipient with NOTIFY gets a report only for the events it
//     lists: NEVER, none; FAILURE, bounces; DELAY, delay warnings;
//     SUCCESS, delivery. A recipient without NOTIFY gets bounces and
//     delay warnings (RFC 3461 §4.1: FAILURE,DELAY is the default),
//     never a success report;
//   - success: "delivered" when the queue put it in a local Maildir (or
//     the server did, at DATA: PutDelivered); "relayed" when the next
//     hop took it without offering DSN, so that nobody further will
//     report. A next hop that offers DSN got the parameters and
//     reports itself;
//   - the original message goes back as its header (text/rfc822-headers),
//     unless a failure DSN is for a message sent with RET=FULL of at most
//     maxDSNFull bytes: then it goes back whole (message/rfc822). RET=HDRS
//     and success and delay reports return the header alone;
//   - ENVID goes back as Original-Envelope-Id, each recipient's ORCPT as
//     its Original-Recipient (RFC 3464 §2.2.1, §2.3.1).
//
// Nothing goes to the null sender <>.

// wants reports whether a recipient with DSN parameters p is to get a
// report of action.
func wants(p smtp.RcptParams, action string) bool {
	if p.Notify == "" {
		return action == "failed" || action == "delayed"
	}
	want := map[string]string{"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS", "relayed": "SUCCESS"}[action]
	return slices.Contains(strings.Split(p.Notify, ","), want)
}

// notified returns the reports of rs whose recipients asked for them.
func notified(rs []report) []report {
	var out []report
	for _, r := range rs {
		if wants(r.r.dsn, r.action) {
			out = append(out, r)
		}
	}
	return out
}

// sendDSN queues a delivery status notification (RFC 3464) about the
// recipients rs of e for its sender: kind is "failed", "delayed" or
// "success" (each report saying delivered or relayed).
func (q *Queue) sendDSN(e *entry, set Settings, now time.Time, kind string, rs []report) error {
	full := kind == "failed" && e.params.Ret == "FULL" && e.size <= maxDSNFull
	var orig []byte
	var err error
	if full {
		orig, err = os.ReadFile(q.st.path(e.id, ".msg"))
	} else {
		orig, err = q.st.header(e.id)
	}
	if err != nil {
		return err
	}
	id, err := q.putDSN(dsn{host: set.Hostname, sender: e.from, arrived: e.arrived, now: now,
		kind: kind, reports: rs, orig: orig, full: full, until: e.arrived.Add(set.Lifetime),
		envID: e.params.EnvID})
	if err != nil {
		return err
	}
	q.log.Printf("dsn %s for %s to %s: %s", id, e.id, e.from, kind)
	return nil
}

// putDSN queues the DSN d from <> to its sender.
func (q *Queue) putDSN(d dsn) (string, error) {
	msg := buildDSN(d)
	id, err := q.put(context.Background(), smtp.Mail{Rcpts: []string{d.sender}}, q.signed(msg), false)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	q.n.DSNs++
	q.mu.Unlock()
	return id, nil
}

// PutDelivered queues the success DSN (Action: delivered) for the
// recipients of m that asked NOTIFY=SUCCESS, delivered locally as the
// message arrived (the server's Maildir delivery at DATA), and returns
// its id: "" when nobody asked or the sender is <>. msg is the message
// as delivered; its header goes into the DSN. Once it returns nil the
// DSN is durable, as a message Put is.
func (q *Queue) PutDelivered(ctx context.Context, m smtp.Mail, msg io.Reader) (string, error) {
	if m.From == "" {
		return "", nil
	}
	if err := checkAddr(m.From); err != nil {
		return "", err
	}
	if err := CheckEnvID(m.EnvID); err != nil {
		return "", err
	}
	var rs []report
	for i, a := range m.Rcpts {
		if i >= len(m.Rcpt) || !wants(m.Rcpt[i], "delivered") {
			continue
		}
		if err := CheckRcptParams(m.Rcpt[i]); err != nil {
			return "", err
		}
		rs = append(rs, report{r: &rcpt{addr: a, dsn: m.Rcpt[i]}, action: "delivered"})
	}
	if len(rs) == 0 {
		return "", nil
	}
	hdr, err := readHeader(msg)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	set := q.set
	q.mu.Unlock()
	now := q.clock.Now()
	id, err := q.putDSN(dsn{host: set.Hostname, sender: m.From, arrived: now, now: now,
		kind: "success", reports: rs, orig: hdr, envID: m.EnvID})
	if err != nil {
		return "", err
	}
	q.log.Printf("dsn %s to %s: delivered to %s", id, m.From, addrs(rcptsOf(rs)))
	return id, nil
}

func rcptsOf(rs []report) []*rcpt {
	var l []*rcpt
	for _, r := range rs {
		l = append(l, r.r)
	}
	return l
}

// header returns the header of message id, up to its empty line, at most
// maxDSNHeader bytes cut at a line end.
func (s *store) header(id string) ([]byte, error) {
	f, err := os.Open(s.path(id, ".msg"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readHeader(f)
}

// readHeader returns the header of the message in r, up to its empty
// line, at most maxDSNHeader bytes cut at a line end.
func readHeader(r io.Reader) ([]byte, error) {
	var b bytes.Buffer
	br := bufio.NewReader(io.LimitReader(r, maxDSNHeader))
	for {
		line, err := br.ReadBytes('\n')
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
	kind         string // failed, delayed, success
	reports      []report
	orig         []byte // the original header, or the whole message if full
	full         bool
	until        time.Time
	envID        string // ENVID, "" if none
}

// buildDSN makes the DSN message: RFC 6522 multipart/report with a part
// for people quoting the replies, the RFC 3464 message/delivery-status
// part, and the original header (text/rfc822-headers) or message
// (message/rfc822). From MAILER-DAEMON@host; the caller queues it with
// the null sender.
func buildDSN(d dsn) []byte {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	subject := "Undelivered mail returned to sender"
	switch d.kind {
	case "delayed":
		subject = "Delayed mail (still being retried)"
	case "success":
		subject = "Successful mail delivery report"
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

	if len(d.orig) > 0 {
		ct := "text/rfc822-headers"
		if d.full {
			ct = "message/rfc822"
		}
		w, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {ct}})
		w.Write(d.orig)
	}
	mw.Close()
	return b.Bytes()
}

// human is the first part: what happened, in words, with the replies.
func (d dsn) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", d.host)
	switch d.kind {
	case "delayed":
		fmt.Fprintf(&b, "Your message has not been delivered yet to the recipients below.\r\n"+
			"The mail system will keep trying until %s;\r\nyou need not send it again.\r\n\r\n", d.until.Format(time.RFC1123Z))
	case "success":
		b.WriteString("Your message was delivered to the recipients below, as you asked to be told.\r\n" +
			"\"Relayed\" means it went on to a system that will not report further.\r\n\r\n")
	default:
		b.WriteString("Your message could not be delivered to the recipients below,\r\n" +
			"and the mail system has given up.\r\n\r\n")
	}
	for _, r := range d.reports {
		fmt.Fprintf(&b, "<%s>:\r\n    ", r.r.addr)
		switch {
		case r.action == "delivered":
			b.WriteString("delivered to the mailbox")
		case r.action == "relayed":
			b.WriteString("relayed to a system without delivery status notifications")
		case r.expired:
			b.WriteString("still undelivered after the message's lifetime; the last reply was\r\n    ")
		}
		if r.err != nil {
			b.WriteString(errText(r.err))
		}
		if m := remoteMTA(r.err); m != "" {
			fmt.Fprintf(&b, "\r\n    (from %s)", m)
		}
		b.WriteString("\r\n\r\n")
	}
	if d.full {
		b.WriteString("Your message is attached.\r\n")
	} else {
		b.WriteString("The header of your message is attached.\r\n")
	}
	return b.String()
}

// status is the message/delivery-status part (RFC 3464 §2).
func (d dsn) status() string {
	var b strings.Builder
	if d.envID != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\r\n", clean(d.envID)) // §2.2.1
	}
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", d.host)
	fmt.Fprintf(&b, "Arrival-Date: %s\r\n", d.arrived.Format(time.RFC1123Z))
	for _, r := range d.reports {
		b.WriteString("\r\n")
		if o := r.r.dsn.ORcpt; o != "" {
			fmt.Fprintf(&b, "Original-Recipient: %s\r\n", clean(o)) // §2.3.1
		}
		fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\r\n", r.r.addr)
		fmt.Fprintf(&b, "Action: %s\r\n", r.action)
		if r.action == "delivered" || r.action == "relayed" {
			fmt.Fprintf(&b, "Status: 2.0.0\r\n")
			continue
		}
		status, diag := statusOf(r.err, r.expired)
		fmt.Fprintf(&b, "Status: %s\r\n", status)
		if m := remoteMTA(r.err); m != "" {
			fmt.Fprintf(&b, "Remote-MTA: dns; %s\r\n", m)
		}
		fmt.Fprintf(&b, "Diagnostic-Code: %s\r\n", diag)
		fmt.Fprintf(&b, "Last-Attempt-Date: %s\r\n", d.now.Format(time.RFC1123Z))
		if r.action == "delayed" {
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
	var se *smtp.StatusError
	switch {
	case errors.As(err, &r):
		status, diag = r.Enh, "smtp; "+errText(r)
	case errors.As(err, &se): // ours, with its code: 5.6.7 for a next hop without SMTPUTF8
		status, diag = se.Enh, "X-smtpfs; "+errText(err)
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

// An OutcomeSender is a Deliverer that also tells what it learned of the
// next hop (the smtp client does, with Client.SendOutcome): whether the
// server that took the message offered DSN. The queue reports "relayed"
// to a NOTIFY=SUCCESS recipient only when it did not; a Deliverer that
// is no OutcomeSender is taken as a next hop without DSN.
type OutcomeSender interface {
	SendOutcome(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) (rcptErrs []error, o smtp.Outcome, err error)
}

// send hands m to the Deliverer and reports whether the next hop took
// DSN.
func (q *Queue) send(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) ([]error, bool, error) {
	if o, ok := q.deliver.(OutcomeSender); ok {
		errs, out, err := o.SendOutcome(ctx, dest, m, msg)
		return errs, out.DSN, err
	}
	errs, err := q.deliver.Send(ctx, dest, m, msg)
	return errs, false, err
}

// sendOn is send over a session that carries several messages.
func sendOn(ctx context.Context, cn *smtp.Conn, m smtp.Mail, msg io.Reader) ([]error, bool, error) {
	errs, out, err := cn.SendOutcome(ctx, m, msg)
	return errs, out.DSN, err
}
