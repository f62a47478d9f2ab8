package computefake

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// The fake's own wire format, read as raw JSON rather than through the
// SDK: the error body, list pages and their tokens.
func TestWireFormat(t *testing.T) {
	c := New(t)
	c.PageSize = 1
	c.AddInstance(InstanceSpec{Project: "p1", Zone: "europe-west1-b", Name: "a", InternalIP: "10.0.0.2"})
	c.AddInstance(InstanceSpec{Project: "p1", Zone: "europe-west1-b", Name: "b", InternalIP: "10.0.0.3"})
	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := c.srv.Client().Get(c.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		return resp.StatusCode, m
	}

	code, m := get("/compute/v1/projects/p1/zones/europe-west1-b/instances/nope")
	e, _ := m["error"].(map[string]any)
	items, _ := e["errors"].([]any)
	if code != http.StatusNotFound || e["code"] != float64(404) || len(items) != 1 || items[0].(map[string]any)["reason"] != "notFound" {
		t.Errorf("not found: %d %v", code, m)
	}

	code, m = get("/compute/v1/projects/p1/zones/europe-west1-b/instances")
	list, _ := m["items"].([]any)
	tok, _ := m["nextPageToken"].(string)
	if code != 200 || len(list) != 1 || tok == "" || list[0].(map[string]any)["name"] != "a" {
		t.Fatalf("first page: %d %v", code, m)
	}
	if id, ok := list[0].(map[string]any)["id"].(string); !ok || id == "" {
		t.Errorf("instance id %v, want a decimal string as the API sends uint64", list[0].(map[string]any)["id"])
	}
	code, m = get("/compute/v1/projects/p1/zones/europe-west1-b/instances?pageToken=" + tok)
	if list, _ := m["items"].([]any); code != 200 || len(list) != 1 || m["nextPageToken"] != nil || list[0].(map[string]any)["name"] != "b" {
		t.Errorf("last page: %d %v", code, m)
	}
	if code, _ = get("/compute/v1/projects/p1/zones/europe-west1-b/instances?pageToken=%21%21"); code != http.StatusBadRequest {
		t.Errorf("a bad page token: %d", code)
	}

	c.PageSize = 500
	code, m = get("/compute/v1/projects/p1/aggregated/instances")
	scoped, _ := m["items"].(map[string]any)
	zone, _ := scoped["zones/europe-west1-b"].(map[string]any)
	if code != 200 || len(zone["instances"].([]any)) != 2 || m["nextPageToken"] != nil {
		t.Errorf("aggregated: %d %v", code, m)
	}
	code, m = get("/compute/v1/projects/p1/aggregated/instances?maxResults=1")
	scoped, _ = m["items"].(map[string]any)
	zone, _ = scoped["zones/europe-west1-b"].(map[string]any)
	if code != 200 || len(zone["instances"].([]any)) != 1 || m["nextPageToken"] == nil {
		t.Errorf("aggregated, maxResults=1: %d %v", code, m)
	}
}
