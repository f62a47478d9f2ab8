package server

import (
	"context"
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// CloudSyncer runs a discovery of what ajard manages in one cloud
// (cloudsync.Syncer).
type CloudSyncer interface {
	SyncNow(ctx context.Context) (control.CloudSyncSummary, error)
}

// HandleCloudSync makes POST /api/v1/clouds/{backend}/sync run sync: an
// admin runs a discovery of that cloud now and gets its summary. ajard
// calls it for each cloud backend it runs (before serving); for the others
// the route answers 404. POST /api/v1/azure/sync, the route of earlier
// releases, is the same as /api/v1/clouds/azure/sync.
func (s *Server) HandleCloudSync(backend string, sync CloudSyncer) {
	s.cloudMu.Lock()
	defer s.cloudMu.Unlock()
	s.clouds[backend] = sync
}

func (s *Server) cloudSync(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	backend := r.PathValue("backend")
	if backend == "" {
		backend = jit.BackendAzure // POST /api/v1/azure/sync
	}
	s.cloudMu.Lock()
	sync := s.clouds[backend]
	s.cloudMu.Unlock()
	if sync == nil {
		return &jit.Error{Code: jit.ENotFound, Message: "this server manages no " + backend + " cloud", Target: "backend"}
	}
	if err := s.ctl.AuthorizeCloudSync(a); err != nil {
		return err
	}
	sum, err := sync.SyncNow(r.Context())
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, sum)
}
