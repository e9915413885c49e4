package twiliosim

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pageRow is one message as the page shows it.
type pageRow struct {
	Time, Channel, To, From, Body, ContentSID, SID string
	Vars                                           []pageVar
	Segments                                       int
}

type pageVar struct{ Name, Value string }

type pageData struct {
	Total, Shown, Retained int
	Filter                 string
	Now                    string
	Rows                   []pageRow
	Rejected               []pageRejection
}

type pageRejection struct {
	Time, To, Message string
	Status, Code      int
	Injected          bool
}

// handlePage is GET /: the newest messages as a German HTML page.
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.PageLimit
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 && n < limit {
		limit = n
	}
	filter, _ := strings.CutPrefix(strings.TrimSpace(r.URL.Query().Get("to")), "whatsapp:")
	msgs := s.store.newest(limit, filter)
	const layout = "02.01.2006 15:04:05"
	d := pageData{
		Total:    s.Count(),
		Shown:    len(msgs),
		Retained: s.store.len(),
		Filter:   filter,
		Now:      time.Now().In(s.loc).Format(layout),
		Rows:     make([]pageRow, len(msgs)),
	}
	for i, m := range msgs {
		row := pageRow{
			Time:       m.Created.In(s.loc).Format(layout),
			Channel:    "SMS",
			To:         m.Recipient(),
			From:       strings.TrimPrefix(m.From, "whatsapp:"),
			Body:       m.Body,
			ContentSID: m.ContentSID,
			SID:        m.SID,
			Segments:   m.Segments,
		}
		if m.Channel == "whatsapp" {
			row.Channel = "WhatsApp"
		}
		if row.From == "" {
			row.From = m.MessagingServiceSID
		}
		for _, k := range slices.Sorted(maps.Keys(m.ContentVariables)) {
			row.Vars = append(row.Vars, pageVar{k, m.ContentVariables[k]})
		}
		d.Rows[i] = row
	}
	for _, rj := range s.rejected.newest() {
		d.Rejected = append(d.Rejected, pageRejection{
			Time: rj.Time.In(s.loc).Format(layout), To: rj.To, Message: rj.Message,
			Status: rj.Status, Code: rj.Code, Injected: rj.Injected,
		})
	}
	var buf bytes.Buffer
	if err := s.page.Execute(&buf, d); err != nil {
		http.Error(w, "Seite konnte nicht erzeugt werden: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

const pageTemplate = `<!doctype html>
<html lang="de">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>Versendete SMS &amp; WhatsApp</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f}
h1{font-size:1.4rem;margin:0 0 .3rem}
h2{font-size:1.1rem;margin-top:2rem}
p.meta{color:#555;margin:0 0 1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.body{white-space:pre-wrap;max-width:40rem}
td.sid,td.num{font-family:ui-monospace,monospace;white-space:nowrap}
.wa{color:#128c4b;font-weight:600}
.sms{color:#1a5fb4;font-weight:600}
.tpl{color:#555}
.inj{color:#a15c00}
</style>
</head>
<body>
<h1>Versendete SMS &amp; WhatsApp</h1>
<p class="meta">{{.Total}} Nachrichten angenommen, {{.Retained}} gespeichert, die neuesten {{.Shown}} angezeigt{{if .Filter}} für {{.Filter}} (<a href="/">alle</a>){{end}} · Stand {{.Now}} · aktualisiert sich alle 5 Sekunden</p>
<form method="get" action="/"><label>Empfänger <input name="to" value="{{.Filter}}" placeholder="+4915112345678"></label> <button>Filtern</button></form>
<table>
<thead><tr><th>Zeit</th><th>Kanal</th><th>An</th><th>Von</th><th>Nachricht</th><th>Segmente</th><th>SID</th></tr></thead>
<tbody>
{{range .Rows}}<tr>
<td class="num">{{.Time}}</td>
<td>{{if eq .Channel "WhatsApp"}}<span class="wa">WhatsApp</span>{{else}}<span class="sms">SMS</span>{{end}}</td>
<td class="num"><a href="/?to={{.To}}">{{.To}}</a></td>
<td class="num">{{.From}}</td>
<td class="body">{{if .ContentSID}}<span class="tpl">Vorlage {{.ContentSID}}</span>{{range .Vars}}
{{.Name}} = {{.Value}}{{end}}{{else}}{{.Body}}{{end}}</td>
<td>{{.Segments}}</td>
<td class="sid">{{.SID}}</td>
</tr>
{{else}}<tr><td colspan="7">Noch keine Nachrichten.</td></tr>
{{end}}</tbody>
</table>
{{if .Rejected}}<h2>Abgelehnte Anfragen</h2>
<table>
<thead><tr><th>Zeit</th><th>An</th><th>HTTP</th><th>Fehlercode</th><th>Meldung</th></tr></thead>
<tbody>
{{range .Rejected}}<tr>
<td class="num">{{.Time}}</td>
<td class="num">{{.To}}</td>
<td>{{.Status}}</td>
<td><a href="https://www.twilio.com/docs/errors/{{.Code}}">{{.Code}}</a></td>
<td>{{.Message}}{{if .Injected}} <span class="inj">(simuliert)</span>{{end}}</td>
</tr>
{{end}}</tbody>
</table>
{{end}}</body>
</html>
`
