import { useState } from "react";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import { Box, ImageIcon, Search, X } from "lucide-react";

// Creations that did not finish normally (memory/store.py statuses); complete / image_only need no badge.
const STATUS_BADGES = { in_progress: "in progress", interrupted: "interrupted", failed: "failed" };

function when(iso) {
  try {
    return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  } catch (e) {
    return iso || "";
  }
}

// Browse the user's creations newest first, search them by meaning and time, open one.
export default function History() {
  const initial = props || {};
  const [data, setData] = useState(initial);
  const [query, setQuery] = useState(initial.query || "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  const run = async (name, payload, append) => {
    setBusy(true);
    setError("");
    try {
      const res = await callAction({ name, payload });
      const next = res && res.response;
      if (!next || !next.items) throw new Error("no answer");
      setData(append ? { ...next, items: [...(data.items || []), ...next.items] } : next);
    } catch (e) {
      setError("Could not load your creations — please try again.");
    } finally {
      setBusy(false);
    }
  };
  const search = (e) => {
    e.preventDefault();
    run("history_search", { query });
  };
  const clear = () => {
    setQuery("");
    run("history_page", { offset: 0 });
  };
  const more = () => run("history_page", { offset: (data.offset || 0) + (data.items || []).length }, true);
  const open = (id) => callAction({ name: "open_creation", payload: { id } });
  const items = data.items || [];

  return (
    <div className="atl-card atl-history" data-atelier-history={data.mode || "history"}>
      <form className="atl-search" onSubmit={search}>
        <Input value={query} onChange={(e) => setQuery(e.target.value)} placeholder="Search by meaning and time — “dragons from last week”" data-atelier-search="1" />
        <Button size="sm" type="submit" disabled={busy}><Search size={14} /> Search</Button>
        {(data.mode === "search" || query) && (
          <Button size="sm" variant="ghost" type="button" onClick={clear} title="Show everything, newest first"><X size={14} /> All</Button>
        )}
      </form>
      <div className="atl-title" data-atelier-history-title="1">{busy ? "Looking…" : data.title}</div>
      {error && <div className="atl-note">{error}</div>}
      <div className="atl-grid">
        {items.map((it) => (
          <button type="button" className="atl-tile" key={it.id} onClick={() => open(it.id)} title={it.enhanced_prompt || it.prompt} data-atelier-item={it.id}>
            {it.thumb_url ? (
              <img src={it.thumb_url} alt={it.prompt} loading="lazy" data-atelier-thumb="1" />
            ) : (
              <div className="atl-placeholder"><ImageIcon size={18} /></div>
            )}
            <div className="atl-tile-text">
              <div className="atl-tile-prompt">{it.prompt}</div>
              <div className="atl-meta">
                {when(it.created_at)}
                {it.has_model && <span className="atl-badge"><Box size={11} /> 3D</span>}
                {it.parent_id && <span className="atl-badge">remix</span>}
                {STATUS_BADGES[it.status] && <span className="atl-badge" data-atelier-status={it.status} title={it.status_reason || ""}>{STATUS_BADGES[it.status]}</span>}
              </div>
            </div>
          </button>
        ))}
      </div>
      {data.has_more && (
        <Button size="sm" variant="outline" onClick={more} disabled={busy}>Show more</Button>
      )}
    </div>
  );
}
