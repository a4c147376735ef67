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
//     and success and delay reports return the header alone, and so does
//     every report on a REQUIRETLS message (RFC 8689 §5: RET=FULL is
//     disregarded, the body is not to travel where TLS is not required);
//   - ENVID goes back as Original-Envelope-Id, each recipient's ORCPT as
//     its Original-Recipient (RFC 3464 §2.2.1, §2.3.1);
//   - the DSN of a REQUIRETLS message, which carries its header, leaves
//     with REQUIRETLS too (RFC 8689 §5); one to a UTF-8 sender needs
//     SMTPUTF8 (RFC 6531 §3.4);
//   - the DSN of a message that needs SMTPUTF8 (it came with SMTPUTF8,
//     or has UTF-8 in its header or addresses) is a global one (RFC 6533
//     §6): its status part is message/global-delivery-status, the
//     original goes back as message/global-headers or message/global, a
//     recipient whose address is not ASCII is named with the utf-8
//     address type (§3), and the DSN, which carries UTF-8, leaves with
//     SMTPUTF8 whatever its sender. An ASCII message's DSN is the plain
//     RFC 3464 one.
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
	// RFC 8689 §5: a REQUIRETLS message comes back as if RET=HDRS.
	full := kind == "failed" && e.params.Ret == "FULL" && !e.params.RequireTLS && e.size <= maxDSNFull
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
		envID: e.params.EnvID, requireTLS: e.params.RequireTLS,
		global: isGlobal(e.params.SMTPUTF8, orig, rs)})
	if err != nil {
		return err
	}
	q.log.Printf("dsn %s for %s to %s: %s", id, e.id, e.from, kind)
	return nil
}

// putDSN queues the DSN d from <> to its sender.
func (q *Queue) putDSN(d dsn) (string, error) {
	msg := buildDSN(d)
	m := smtp.Mail{Rcpts: []string{d.sender}, Params: smtp.Params{RequireTLS: d.requireTLS,
		// A UTF-8 sender (its RCPT, our To:) or a global DSN (RFC 6533 §6).
		SMTPUTF8: d.global || smtp.NeedsSMTPUTF8(msg, d.sender)}}
	id, err := q.put(context.Background(), m, q.signed(msg), false)
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
		kind: "success", reports: rs, orig: hdr, envID: m.EnvID, requireTLS: m.RequireTLS,
		global: isGlobal(m.SMTPUTF8, hdr, rs)})
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
	requireTLS   bool   // the message's REQUIRETLS: the DSN leaves with it (RFC 8689 §5)
	global       bool   // the message needs SMTPUTF8: an RFC 6533 DSN
}

// isGlobal reports whether the DSN of a message is to be a global one
// (RFC 6533): the message came with SMTPUTF8, or its header orig or a
// recipient's address is UTF-8.
func isGlobal(smtputf8 bool, orig []byte, rs []report) bool {
	if smtputf8 {
		return true
	}
	for _, r := range rs {
		if smtp.NeedsSMTPUTF8(nil, r.r.addr, r.r.dsn.ORcpt) {
			return true
		}
	}
	return smtp.NeedsSMTPUTF8(orig)
}

// finalRecipient is the Final-Recipient field's value for addr (RFC
// 3464 §2.3.2): type rfc822 for an ASCII address; in a global DSN a
// UTF-8 one has type utf-8 (RFC 6533 §3), in its utf-8-addr-unitext
// form: the UTF-8 as it is, with the characters QUCHAR leaves out (the
// ASCII controls, space, "+", "=" and "\") as EmbeddedUnicodeChar,
// \x{HEXPOINT}.
func finalRecipient(addr string, global bool) string {
	if !global || !smtp.NeedsSMTPUTF8(nil, addr) {
		return "rfc822; " + addr
	}
	var b strings.Builder
	b.WriteString("utf-8; ")
	for _, r := range addr {
		if r <= ' ' || r == '+' || r == '=' || r == '\\' || r == 0x7f {
			fmt.Fprintf(&b, "\\x{%02X}", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// buildDSN makes the DSN message: RFC 6522 multipart/report with a part
// for people quoting the replies, the RFC 3464 message/delivery-status
// part, and the original header (text/rfc822-headers) or message
// (message/rfc822); for a global DSN message/global-delivery-status,
// message/global-headers and message/global (RFC 6533 §6). From
// MAILER-DAEMON@host; the caller queues it with the null sender.
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

	ct := "message/delivery-status"
	if d.global {
		ct = "message/global-delivery-status" // RFC 6533 §6.2
	}
	w, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {ct}})
	io.WriteString(w, d.status())

	if len(d.orig) > 0 {
		ct := "text/rfc822-headers"
		switch {
		case d.full && d.global:
			ct = "message/global" // RFC 6533 §6.1 (RFC 6532 §3.7)
		case d.full:
			ct = "message/rfc822"
		case d.global:
			ct = "message/global-headers" // RFC 6533 §6.3
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
		fmt.Fprintf(&b, "Final-Recipient: %s\r\n", finalRecipient(r.r.addr, d.global))
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
// failure); else the class alone; 4.5.0 for a 2xx or 3xx reply out of
// turn; 4.4.7 (delivery time expired) for a recipient whose lifetime is
// over.
func statusOf(err error, expired bool) (status, diag string) {
	var r *smtp.Reply
	var d *smtp.DNSError
	var se *smtp.StatusError
	switch {
	case errors.As(err, &r) && r.Code/100 != 4 && r.Code/100 != 5:
		// A 2xx or 3xx where the other was due: a server out of step
		// (RFC 3463 §3.1: only 4 and 5 are classes of failure).
		status, diag = "4.5.0", "smtp; "+errText(r)
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
