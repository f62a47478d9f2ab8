package console

import (
	"html/template"
	"io/fs"
	"strings"
)

// parsePages parses each page template with the layout and the shared
// partials.
func parsePages(funcs template.FuncMap) map[string]*template.Template {
	common := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimPrefix(n, "templates/")
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		pages[name] = template.Must(template.Must(common.Clone()).ParseFS(templateFS, n))
	}
	return pages
}
