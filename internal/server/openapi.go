package server

import (
	_ "embed"
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
)

//go:embed openapi.json
var openapiDoc []byte

func (s *Server) openapi(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openapiDoc)
	return err
}
