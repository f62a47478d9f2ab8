package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of every delivery.
const (
	// HeaderSignature is "t=UNIX-SECONDS,v1=HEX": HMAC-SHA256 with the
	// webhook's secret over the timestamp, ".", and the body.
	HeaderSignature = "Ajar-Signature"
	// HeaderEventID is the event's id (its hash in the activity log):
	// the same on every attempt, for receivers to deduplicate on.
	HeaderEventID = "Ajar-Event-Id"
	// HeaderEventSeq is the event's sequence number in the activity log.
	HeaderEventSeq = "Ajar-Event-Seq"
	// HeaderEventKind is its kind, such as request.pending.
	HeaderEventKind = "Ajar-Event-Kind"
	HeaderWebhookID = "Ajar-Webhook-Id"
	// HeaderAttempt counts the attempts of this delivery, from 1.
	HeaderAttempt = "Ajar-Delivery-Attempt"
)

// ReplayWindow is how far from the receiver's clock a signature's
// timestamp may be for Verify to accept it.
const ReplayWindow = 5 * time.Minute

// Sign returns the Ajar-Signature header value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks an Ajar-Signature header value against body, as a
// receiver does: the signature must match (compared in constant time) and
// its timestamp be within window of now.
func Verify(secret, header string, body []byte, now time.Time, window time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("signature timestamp %s is more than %s from now", time.Unix(sec, 0).UTC().Format(time.RFC3339), window)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("signature does not match")
}
