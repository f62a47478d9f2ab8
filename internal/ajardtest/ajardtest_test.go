package ajardtest

import (
	"context"
	"testing"
)

func TestStartRestart(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	if _, err := s.Admin.CreateGroup(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	gs, err := s.Admin.ListGroups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != "prod" {
		t.Fatalf("after restart: %v %v", gs, err)
	}
}
