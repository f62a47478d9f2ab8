package webhook

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Notification is the body of a plain webhook, with stable field names.
type Notification struct {
	ID    string    `json:"id"` // the event's hash, as in Ajar-Event-Id
	Kind  string    `json:"kind"`
	Seq   int64     `json:"seq"`
	Time  time.Time `json:"time"`
	Text  string    `json:"text"`          // one line for people
	URL   string    `json:"url,omitempty"` // the console page it is about
	VM    *VMRef    `json:"vm,omitempty"`
	Event jit.Event `json:"event"`
}

// VMRef names the VM an event is about.
type VMRef struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Group string `json:"group,omitempty"`
}

// message is what every format says about one event.
type message struct {
	kind, title, text string
	facts             [][2]string
	url, urlTitle     string
	vm                *VMRef
}

// describe turns an event into a message; vmName is the name of its VM
// ("" when unknown) and base the console's external URL ("" for none).
func describe(e *jit.Event, kind, vmName, base string) message {
	var d map[string]any
	json.Unmarshal(e.Details, &d)
	str := func(k string) string {
		if v, ok := d[k]; ok && v != nil {
			switch v := v.(type) {
			case string:
				return v
			case float64:
				return fmt.Sprint(v)
			}
		}
		return ""
	}
	if vmName == "" {
		vmName = str("vm")
	}
	m := message{kind: kind}
	if e.VMID != "" || e.Group != "" {
		m.vm = &VMRef{ID: e.VMID, Name: vmName, Group: e.Group}
	}
	on := "a VM"
	if vmName != "" {
		on = vmName
	} else if e.VMID != "" {
		on = "VM " + e.VMID
	}
	if e.Group != "" {
		on += " (group " + e.Group + ")"
	}
	req, user := str("request"), str("user")
	if user == "" {
		user = e.Actor
	}
	link := func(path, title string) {
		if base != "" {
			m.url, m.urlTitle = strings.TrimRight(base, "/")+path, title
		}
	}
	switch kind {
	case jit.KindRequestPending:
		m.title = "Access request waiting for approval"
		m.text = fmt.Sprintf("%s asks for access to %s", e.Actor, on)
		m.facts = append(m.facts, [2]string{"Requester", e.Actor}, [2]string{"Justification", str("justification")},
			[2]string{"Approvals required", str("required")}, [2]string{"Waits until", str("expiresAt")})
		if asked, ok := d["asked"].(map[string]any); ok {
			m.facts = append(m.facts, [2]string{"Ports", askedPorts(asked)})
		}
		link("/requests#req-"+url.PathEscape(req), "Review the request")
	case jit.KindRequestApproved:
		m.title = "Access request approved"
		m.text = fmt.Sprintf("%s's request for %s is approved", user, on)
		if str("user") != "" && e.Actor != str("user") {
			m.text += " by " + e.Actor
		}
	case jit.KindRequestDenied:
		m.title = "Access request denied"
		m.text = fmt.Sprintf("%s denied %s's request for %s", e.Actor, user, on)
		m.facts = append(m.facts, [2]string{"Reason", str("reason")})
	case jit.KindRequestExpired:
		m.title = "Access request expired"
		m.text = fmt.Sprintf("%s's request for %s expired without enough approvals", user, on)
	case jit.KindRequestCancelled:
		m.title = "Access request cancelled"
		m.text = fmt.Sprintf("%s cancelled their request for %s", e.Actor, on)
	case jit.KindGrantOpened:
		m.title = "Port opened"
		m.text = fmt.Sprintf("Port %s/%s of %s is open to %s for %s until %s", str("port"), str("protocol"), on, str("source"), str("user"), str("endTime"))
		link("/machines/"+url.PathEscape(e.VMID), "Open the machine")
	case jit.KindGrantEnded:
		m.title = "Port closed"
		how := map[string]string{jit.OpGrantExpire: "expired", jit.OpGrantRevoke: "revoked", jit.OpGrantSupersede: "superseded"}[e.Operation]
		m.text = fmt.Sprintf("Port %s/%s of %s is closed again to %s for %s (%s)", str("port"), str("protocol"), on, str("source"), str("user"), how)
		if r := str("reason"); r != "" {
			m.facts = append(m.facts, [2]string{"Reason", r})
		}
	case jit.KindPolicyChanged:
		m.title = "JIT policy changed"
		verb := map[string]string{jit.OpPolicyCreate: "enabled JIT on", jit.OpPolicyUpdate: "changed the JIT policy of", jit.OpPolicyDelete: "disabled JIT on"}[e.Operation]
		m.text = fmt.Sprintf("%s %s", e.Actor, verb+" "+on)
		link("/machines/"+url.PathEscape(e.VMID), "Open the machine")
	case jit.KindDriftDetected:
		m.title = "Drift detected"
		m.text = fmt.Sprintf("The firewall rules of %s were changed outside ajar", on)
		m.facts = append(m.facts, [2]string{"Detail", str("reason")})
		link("/machines/"+url.PathEscape(e.VMID), "Open the machine")
	case jit.KindAgentOffline:
		m.title = "Agent offline"
		m.text = fmt.Sprintf("The agent of %s stopped reporting", on)
		m.facts = append(m.facts, [2]string{"Last seen", str("lastSeen")}, [2]string{"Hostname", str("hostname")})
		link("/machines/"+url.PathEscape(e.VMID), "Open the machine")
	default:
		m.title, m.text = e.Operation, e.Operation+" on "+on
	}
	if req != "" {
		m.facts = append(m.facts, [2]string{"Request", req})
	}
	kept := m.facts[:0]
	for _, f := range m.facts {
		if f[1] != "" {
			kept = append(kept, f)
		}
	}
	m.facts = kept
	return m
}

// askedPorts lists the ports of an access request's details.
func askedPorts(asked map[string]any) string {
	var out []string
	vms, _ := asked["virtualMachines"].([]any)
	for _, v := range vms {
		vm, _ := v.(map[string]any)
		ports, _ := vm["ports"].([]any)
		for _, p := range ports {
			pm, _ := p.(map[string]any)
			s := fmt.Sprint(pm["number"])
			if d, ok := pm["duration"].(string); ok && d != "" {
				s += " for " + d
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}

// Body returns the body of a delivery of e in format.
func Body(format string, e *jit.Event, kind, vmName, base string) ([]byte, error) {
	m := describe(e, kind, vmName, base)
	switch format {
	case jit.FormatSlack:
		return json.Marshal(slackBody(m))
	case jit.FormatTeams:
		return json.Marshal(teamsBody(m))
	}
	return json.Marshal(Notification{ID: e.Hash, Kind: kind, Seq: e.Seq, Time: e.Time, Text: m.text, URL: m.url, VM: m.vm, Event: *e})
}

// Slack incoming webhook: text (the notification's fallback) and Block
// Kit blocks. https://api.slack.com/messaging/webhooks

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string        `json:"type"`
	Text     *slackText    `json:"text,omitempty"`
	Fields   []slackText   `json:"fields,omitempty"`
	Elements []slackButton `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

type slackButton struct {
	Type string    `json:"type"` // button
	Text slackText `json:"text"`
	URL  string    `json:"url"`
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slackBody(m message) slackMessage {
	text := slackEscape(m.text)
	out := slackMessage{Text: slackEscape(m.title) + ": " + text}
	out.Blocks = append(out.Blocks,
		slackBlock{Type: "header", Text: &slackText{Type: "plain_text", Text: cut(m.title, 150)}},
		slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: cut(text, 3000)}})
	if len(m.facts) > 0 {
		b := slackBlock{Type: "section"}
		for _, f := range m.facts[:min(len(m.facts), 10)] {
			b.Fields = append(b.Fields, slackText{Type: "mrkdwn", Text: cut("*"+slackEscape(f[0])+"*\n"+slackEscape(f[1]), 2000)})
		}
		out.Blocks = append(out.Blocks, b)
	}
	if m.url != "" {
		out.Blocks = append(out.Blocks, slackBlock{Type: "actions", Elements: []slackButton{{Type: "button",
			Text: slackText{Type: "plain_text", Text: m.urlTitle}, URL: m.url}}})
	}
	return out
}

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xc0) == 0x80 {
		n--
	}
	return s[:n]
}

// Microsoft Teams incoming webhook (and Workflows "post to a channel when
// a webhook request is received"): a message carrying an Adaptive Card.
// https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using

type teamsMessage struct {
	Type        string            `json:"type"` // message
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string       `json:"contentType"` // application/vnd.microsoft.card.adaptive
	ContentURL  *string      `json:"contentUrl"`  // null
	Content     adaptiveCard `json:"content"`
}

type adaptiveCard struct {
	Schema  string         `json:"$schema"`
	Type    string         `json:"type"` // AdaptiveCard
	Version string         `json:"version"`
	Body    []adaptiveItem `json:"body"`
	Actions []adaptiveItem `json:"actions,omitempty"`
}

type adaptiveItem struct {
	Type   string      `json:"type"`
	Text   string      `json:"text,omitempty"`
	Weight string      `json:"weight,omitempty"`
	Size   string      `json:"size,omitempty"`
	Wrap   bool        `json:"wrap,omitempty"`
	Facts  []teamsFact `json:"facts,omitempty"`
	Title  string      `json:"title,omitempty"`
	URL    string      `json:"url,omitempty"`
}

type teamsFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

func teamsBody(m message) teamsMessage {
	card := adaptiveCard{Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard", Version: "1.4"}
	card.Body = append(card.Body,
		adaptiveItem{Type: "TextBlock", Text: m.title, Weight: "Bolder", Size: "Medium", Wrap: true},
		adaptiveItem{Type: "TextBlock", Text: m.text, Wrap: true})
	if len(m.facts) > 0 {
		fs := adaptiveItem{Type: "FactSet"}
		for _, f := range m.facts {
			fs.Facts = append(fs.Facts, teamsFact{Title: f[0], Value: f[1]})
		}
		card.Body = append(card.Body, fs)
	}
	if m.url != "" {
		card.Actions = append(card.Actions, adaptiveItem{Type: "Action.OpenUrl", Title: m.urlTitle, URL: m.url})
	}
	return teamsMessage{Type: "message", Attachments: []teamsAttachment{{ContentType: "application/vnd.microsoft.card.adaptive", Content: card}}}
}
