package webhook_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/webhook"
)

// pendingEvent is a request.pending event as the control plane logs it.
func pendingEvent() *jit.Event {
	details, _ := json.Marshal(map[string]any{"request": "r123", "justification": "incident <7> & more", "required": 2,
		"expiresAt": "2026-12-03T12:00:00Z", "asked": jit.AccessRequest{VirtualMachines: []jit.VMRequest{{ID: "vm1",
			Ports: []jit.PortRequest{{Number: 22, Duration: "PT1H"}}}}}})
	return &jit.Event{Seq: 42, Time: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC), Actor: "ann", VMID: "vm1", Group: "prod",
		Operation: jit.OpRequestPending, Outcome: jit.OutcomeSuccess, Details: details, Hash: "abc123"}
}

// strict decodes b into v refusing unknown fields: the body has exactly
// the fields of the documented message format the test's types list.
func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
}

// Slack's incoming webhook message, as documented at
// https://api.slack.com/messaging/webhooks and
// https://api.slack.com/reference/block-kit/blocks.
type slackMessage struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			Text struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			URL string `json:"url"`
		} `json:"elements"`
	} `json:"blocks"`
}

// TestSlackBody: the message has a text (the notification's fallback),
// at most 50 blocks of known types within Slack's limits (header: plain
// text of 150 characters; section: text up to 3,000 or up to 10 fields of
// 2,000; actions: buttons with a URL), escapes <, > and &, and a pending
// request's message links to its page in the console.
func TestSlackBody(t *testing.T) {
	b, err := webhook.Body(jit.FormatSlack, pendingEvent(), jit.KindRequestPending, "db-7", "https://ajar.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	var m slackMessage
	strict(t, b, &m)
	if m.Text == "" || len(m.Blocks) == 0 || len(m.Blocks) > 50 {
		t.Fatalf("message %s: want text and 1 to 50 blocks", b)
	}
	var link string
	for _, bl := range m.Blocks {
		switch bl.Type {
		case "header":
			if bl.Text == nil || bl.Text.Type != "plain_text" || len(bl.Text.Text) > 150 || len(bl.Fields) > 0 {
				t.Errorf("header block %+v", bl)
			}
		case "section":
			if (bl.Text == nil) == (len(bl.Fields) == 0) && bl.Text == nil {
				t.Errorf("section block without text or fields: %+v", bl)
			}
			if bl.Text != nil && (bl.Text.Type != "mrkdwn" || len(bl.Text.Text) > 3000) {
				t.Errorf("section text %+v", bl.Text)
			}
			if len(bl.Fields) > 10 {
				t.Errorf("section with %d fields", len(bl.Fields))
			}
			for _, f := range bl.Fields {
				if f.Type != "mrkdwn" || len(f.Text) > 2000 {
					t.Errorf("field %+v", f)
				}
				if strings.Contains(f.Text, "incident") && !strings.Contains(f.Text, "incident &lt;7&gt; &amp; more") {
					t.Errorf("justification not escaped for mrkdwn: %q", f.Text)
				}
			}
		case "actions":
			for _, e := range bl.Elements {
				if e.Type != "button" || e.Text.Type != "plain_text" || e.Text.Text == "" || e.URL == "" {
					t.Errorf("actions element %+v", e)
				}
				link = e.URL
			}
		default:
			t.Errorf("block of type %q", bl.Type)
		}
	}
	if link != "https://ajar.example.com/requests#req-r123" {
		t.Errorf("link %q, want the request's place in the console's queue", link)
	}
	if !strings.Contains(m.Text, "ann asks for access to db-7") {
		t.Errorf("text %q does not say who asks for what", m.Text)
	}
}

// The message a Teams incoming webhook (or a Workflows "when a webhook
// request is received" flow) takes: an Adaptive Card attachment, as at
// https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
type teamsMessage struct {
	Type        string `json:"type"`
	Attachments []struct {
		ContentType string  `json:"contentType"`
		ContentURL  *string `json:"contentUrl"`
		Content     struct {
			Schema  string `json:"$schema"`
			Type    string `json:"type"`
			Version string `json:"version"`
			Body    []struct {
				Type   string `json:"type"`
				Text   string `json:"text"`
				Weight string `json:"weight"`
				Size   string `json:"size"`
				Wrap   bool   `json:"wrap"`
				Facts  []struct {
					Title string `json:"title"`
					Value string `json:"value"`
				} `json:"facts"`
			} `json:"body"`
			Actions []struct {
				Type  string `json:"type"`
				Title string `json:"title"`
				URL   string `json:"url"`
			} `json:"actions"`
		} `json:"content"`
	} `json:"attachments"`
}

// TestTeamsBody: a message of type message with one Adaptive Card
// (version 1.4, which Teams renders) of TextBlocks and a FactSet, and an
// Action.OpenUrl to the request's page.
func TestTeamsBody(t *testing.T) {
	b, err := webhook.Body(jit.FormatTeams, pendingEvent(), jit.KindRequestPending, "db-7", "https://ajar.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var m teamsMessage
	strict(t, b, &m)
	if m.Type != "message" || len(m.Attachments) != 1 {
		t.Fatalf("message %s: want type message and one attachment", b)
	}
	a := m.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" || a.ContentURL != nil || !strings.Contains(string(b), `"contentUrl":null`) {
		t.Errorf("attachment content type %q, contentUrl %v", a.ContentType, a.ContentURL)
	}
	c := a.Content
	if c.Type != "AdaptiveCard" || c.Version != "1.4" || c.Schema != "http://adaptivecards.io/schemas/adaptive-card.json" || len(c.Body) < 2 {
		t.Errorf("card %+v", c)
	}
	facts := map[string]string{}
	for _, el := range c.Body {
		switch el.Type {
		case "TextBlock":
			if el.Text == "" || len(el.Facts) > 0 {
				t.Errorf("TextBlock %+v", el)
			}
		case "FactSet":
			for _, f := range el.Facts {
				facts[f.Title] = f.Value
			}
		default:
			t.Errorf("card element of type %q", el.Type)
		}
	}
	if facts["Requester"] != "ann" || facts["Justification"] != "incident <7> & more" || facts["Ports"] != "22 for PT1H" || facts["Approvals required"] != "2" {
		t.Errorf("facts %v", facts)
	}
	if len(c.Actions) != 1 || c.Actions[0].Type != "Action.OpenUrl" || c.Actions[0].URL != "https://ajar.example.com/requests#req-r123" {
		t.Errorf("actions %+v, want one Action.OpenUrl to the request", c.Actions)
	}
}

// TestPlainBody: the plain body carries the event itself under stable
// names, and no link when no public URL is known.
func TestPlainBody(t *testing.T) {
	e := pendingEvent()
	b, err := webhook.Body(jit.FormatPlain, e, jit.KindRequestPending, "db-7", "")
	if err != nil {
		t.Fatal(err)
	}
	var n map[string]any
	if err := json.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "kind", "seq", "time", "text", "vm", "event"} {
		if _, ok := n[k]; !ok {
			t.Errorf("plain body %s lacks %q", b, k)
		}
	}
	if _, ok := n["url"]; ok {
		t.Errorf("plain body %s links without a public URL", b)
	}
	ev, _ := n["event"].(map[string]any)
	if n["id"] != "abc123" || n["kind"] != "request.pending" || ev["seq"] != float64(42) || ev["operation"] != jit.OpRequestPending {
		t.Errorf("plain body %s", b)
	}
	vm, _ := n["vm"].(map[string]any)
	if vm["name"] != "db-7" || vm["group"] != "prod" || vm["id"] != "vm1" {
		t.Errorf("vm %v", vm)
	}
}

// TestEveryKindHasAMessage: each kind's message says something of its own
// in each format.
func TestEveryKindHasAMessage(t *testing.T) {
	ops := map[string]string{jit.KindRequestPending: jit.OpRequestPending, jit.KindRequestApproved: jit.OpRequestApprove,
		jit.KindRequestDenied: jit.OpRequestDeny, jit.KindRequestExpired: jit.OpRequestExpire, jit.KindRequestCancelled: jit.OpRequestCancel,
		jit.KindGrantOpened: jit.OpGrantOpen, jit.KindGrantEnded: jit.OpGrantRevoke, jit.KindPolicyChanged: jit.OpPolicyUpdate,
		jit.KindDriftDetected: jit.OpDriftDetect, jit.KindAgentOffline: jit.OpAgentDisconnect}
	texts := map[string]string{}
	for _, k := range jit.NotificationKinds {
		e := &jit.Event{Seq: 1, Actor: "bob", VMID: "vm1", Group: "prod", Operation: ops[k], Outcome: jit.OutcomeSuccess,
			Details: json.RawMessage(`{"request":"r1","user":"ann","port":22,"protocol":"TCP","source":"192.0.2.1/32","reason":"x"}`)}
		if got := jit.NotificationKind(e); got != k {
			t.Errorf("operation %s is kind %q, want %s", ops[k], got, k)
		}
		for _, f := range []string{jit.FormatPlain, jit.FormatSlack, jit.FormatTeams} {
			b, err := webhook.Body(f, e, k, "db-7", "https://ajar.example.com")
			if err != nil || !json.Valid(b) {
				t.Errorf("%s %s: %v", k, f, err)
			}
		}
		var n webhook.Notification
		b, _ := webhook.Body(jit.FormatPlain, e, k, "db-7", "")
		json.Unmarshal(b, &n)
		if n.Text == "" || !strings.Contains(n.Text, "db-7") {
			t.Errorf("%s: text %q does not name the VM", k, n.Text)
		}
		if other, dup := texts[n.Text]; dup {
			t.Errorf("%s and %s say the same: %q", k, other, n.Text)
		}
		texts[n.Text] = k
	}
	if jit.NotificationKind(&jit.Event{Operation: jit.OpRequestApprove, Outcome: jit.OutcomeFailure}) != "" {
		t.Error("a failed operation is notified")
	}
}
