package server

import "net/http"

// routes lists every route of the API.
func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /api/v1/openapi.json", s.api(s.openapi))

	m.HandleFunc("GET /metrics", s.api(s.serveMetrics))
	m.HandleFunc("GET /api/v1/whoami", s.api(s.whoami))

	m.HandleFunc("POST /api/v1/groups", s.api(s.createGroup))
	m.HandleFunc("GET /api/v1/groups", s.api(s.listGroups))

	m.HandleFunc("POST /api/v1/vms", s.api(s.createVM))
	m.HandleFunc("GET /api/v1/vms", s.api(s.listVMs))
	m.HandleFunc("GET /api/v1/vms/{id}", s.api(s.getVM))
	m.HandleFunc("DELETE /api/v1/vms/{id}", s.api(s.deleteVM))
	m.HandleFunc("PUT /api/v1/vms/{id}/policy", s.api(s.putPolicy))
	m.HandleFunc("GET /api/v1/vms/{id}/policy", s.api(s.getPolicy))
	m.HandleFunc("DELETE /api/v1/vms/{id}/policy", s.api(s.deletePolicy))
	m.HandleFunc("GET /api/v1/vms/{id}/recommendation", s.api(s.recommendation))
	m.HandleFunc("GET /api/v1/vms/{id}/desired-state", s.api(s.vmDesiredState))

	m.HandleFunc("POST /api/v1/requests", s.api(s.createRequest))
	m.HandleFunc("GET /api/v1/requests", s.api(s.listRequests))
	m.HandleFunc("GET /api/v1/requests/pending", s.api(s.listPendingRequests))
	m.HandleFunc("GET /api/v1/requests/{id}", s.api(s.getRequest))
	m.HandleFunc("POST /api/v1/requests/{id}/approve", s.api(s.approveRequest))
	m.HandleFunc("POST /api/v1/requests/{id}/deny", s.api(s.denyRequest))
	m.HandleFunc("POST /api/v1/requests/{id}/cancel", s.api(s.cancelRequest))
	m.HandleFunc("GET /api/v1/grants", s.api(s.listGrants))
	m.HandleFunc("POST /api/v1/grants/{id}/revoke", s.api(s.revokeGrant))

	m.HandleFunc("GET /api/v1/activity", s.api(s.listActivity))
	m.HandleFunc("GET /api/v1/activity/verify", s.api(s.verifyActivity))
	m.HandleFunc("GET /api/v1/activity/archive", s.api(s.exportArchive))
	m.HandleFunc("POST /api/v1/activity/archive", s.api(s.confirmArchive))

	m.HandleFunc("POST /api/v1/users", s.api(s.createUser))
	m.HandleFunc("GET /api/v1/users", s.api(s.listUsers))
	m.HandleFunc("DELETE /api/v1/users/{name}", s.api(s.deleteUser))
	m.HandleFunc("PUT /api/v1/users/{name}/password", s.api(s.setPassword))
	m.HandleFunc("POST /api/v1/tokens", s.api(s.createToken))
	m.HandleFunc("GET /api/v1/tokens", s.api(s.listTokens))
	m.HandleFunc("DELETE /api/v1/tokens/{id}", s.api(s.revokeToken))
	m.HandleFunc("POST /api/v1/rolebindings", s.api(s.createRoleBinding))
	m.HandleFunc("GET /api/v1/rolebindings", s.api(s.listRoleBindings))
	m.HandleFunc("DELETE /api/v1/rolebindings/{id}", s.api(s.deleteRoleBinding))
	m.HandleFunc("POST /api/v1/claimmappings", s.api(s.createClaimMapping))
	m.HandleFunc("GET /api/v1/claimmappings", s.api(s.listClaimMappings))
	m.HandleFunc("DELETE /api/v1/claimmappings/{id}", s.api(s.deleteClaimMapping))
	m.HandleFunc("POST /api/v1/sso/token", s.ssoToken)
	m.HandleFunc("POST /api/v1/sso/device", s.ssoDeviceStart)
	m.HandleFunc("POST /api/v1/sso/device/token", s.ssoDeviceToken)
	m.HandleFunc("POST /api/v1/webhooks", s.api(s.createWebhook))
	m.HandleFunc("GET /api/v1/webhooks", s.api(s.listWebhooks))
	m.HandleFunc("DELETE /api/v1/webhooks/{id}", s.api(s.deleteWebhook))
	m.HandleFunc("GET /api/v1/webhooks/{id}/deliveries", s.api(s.listDeliveries))

	m.HandleFunc("POST /api/v1/enrollment-tokens", s.api(s.createEnrollToken))
	m.HandleFunc("POST /api/v1/agent/enroll", s.api(s.enroll))
	m.HandleFunc("POST /api/v1/agent/watch", s.api(s.agentWatch))
	// The previous agents' long poll and heartbeat (still served during an upgrade).
	m.HandleFunc("GET /api/v1/agent/desired-state", s.api(s.agentDesiredState))
	m.HandleFunc("POST /api/v1/agent/report", s.api(s.agentReport))
	m.HandleFunc("POST /api/v1/agent/events", s.api(s.agentEvent))
	// Cloud discovery: the backends ajard runs register with HandleCloudSync (cloudsync.go).
	m.HandleFunc("POST /api/v1/clouds/{backend}/sync", s.api(s.cloudSync))
	m.HandleFunc("POST /api/v1/azure/sync", s.api(s.cloudSync))

	m.HandleFunc("/api/", s.api(s.notFound))
}

// Handle adds a route served outside the API's bearer authentication, for
// the web console and the Azure-compatible API.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }
