package server

import (
	"context"
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
)

// AzureSyncer runs a discovery of the Azure subscriptions ajard manages
// (cloudsync.Syncer).
type AzureSyncer interface {
	SyncNow(ctx context.Context) (control.CloudSyncSummary, error)
}

// HandleAzureSync serves POST /api/v1/azure/sync with sync: an admin runs
// a discovery now and gets its summary. ajard calls it when it manages
// Azure subscriptions; without them the route does not exist.
func (s *Server) HandleAzureSync(sync AzureSyncer) {
	s.mux.HandleFunc("POST /api/v1/azure/sync", s.api(func(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
		if err := s.ctl.AuthorizeCloudSync(a); err != nil {
			return err
		}
		sum, err := sync.SyncNow(r.Context())
		if err != nil {
			return err
		}
		return httpio.WriteJSON(w, http.StatusOK, sum)
	}))
}
