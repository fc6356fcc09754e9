import { useEffect, useRef, useState } from "react";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import { Box, Download, ImageIcon, Info, Lightbulb, Loader2, RotateCcw, RotateCw, Shuffle } from "lucide-react";

// The viewer's script is served by the app itself (ui/build_assets.sh copies it from npm into
// public/vendor); nothing is fetched from a CDN.
const MV_SRC = "/public/vendor/model-viewer/model-viewer.min.js";
const LIGHTS = [
  { name: "studio", env: "neutral", exposure: "1", shadow: "1", softness: "0.8" },
  { name: "raking", env: "neutral", exposure: "0.75", shadow: "2", softness: "0.15" },
  { name: "soft", env: "legacy", exposure: "1.25", shadow: "0.5", softness: "1" },
];
const HOME_ORBIT = "30deg 70deg 105%";

function useModelViewer() {
  const defined = typeof customElements !== "undefined" && !!customElements.get("model-viewer");
  const [ready, setReady] = useState(defined);
  const [failed, setFailed] = useState(!!window.__atelierViewerFailed);
  useEffect(() => {
    if (ready) return undefined;
    if (!document.getElementById("atelier-model-viewer")) {
      window.ModelViewerElement = Object.assign(window.ModelViewerElement || {}, {
        dracoDecoderLocation: "/public/vendor/draco/",
        ktx2TranscoderLocation: "/public/vendor/basis/",
      });
      const script = document.createElement("script");
      script.type = "module";
      script.src = MV_SRC;
      script.id = "atelier-model-viewer";
      script.onerror = () => {
        window.__atelierViewerFailed = true;
        window.dispatchEvent(new Event("atelier-viewer-failed"));
      };
      document.head.appendChild(script);
    }
    let alive = true;
    const onFail = () => alive && setFailed(true);
    window.addEventListener("atelier-viewer-failed", onFail);
    customElements.whenDefined("model-viewer").then(() => alive && setReady(true));
    return () => {
      alive = false;
      window.removeEventListener("atelier-viewer-failed", onFail);
    };
  }, [ready]);
  return [ready, failed];
}

function withDownload(url) {
  return url + (url.includes("?") ? "&" : "?") + "download=1";
}

function Viewer({ src, alt, file, imageUrl, imageFile }) {
  const ref = useRef(null);
  const [ready, failed] = useModelViewer();
  const [state, setState] = useState("loading");
  const [light, setLight] = useState(0);
  const [spin, setSpin] = useState(false);
  const L = LIGHTS[light];

  useEffect(() => {
    const mv = ref.current;
    if (!mv || !ready) return undefined;
    const onLoad = () => setState("loaded");
    const onError = () => setState("error");
    mv.addEventListener("load", onLoad);
    mv.addEventListener("error", onError);
    if (mv.loaded) setState("loaded");
    return () => {
      mv.removeEventListener("load", onLoad);
      mv.removeEventListener("error", onError);
    };
  }, [ready, src]);

  const reset = () => {
    const mv = ref.current;
    if (!mv) return;
    setSpin(false);
    mv.cameraOrbit = HOME_ORBIT;
    mv.cameraTarget = "auto auto auto";
    mv.fieldOfView = "auto";
    if (mv.resetTurntableRotation) mv.resetTurntableRotation(0);
    if (mv.jumpCameraToGoal) mv.jumpCameraToGoal();
  };

  if (failed) {
    return <div className="atl-viewer atl-placeholder">The 3D viewer's script is missing — run <code>make setup</code> (ui/build_assets.sh). The model can still be downloaded below.</div>;
  }
  return (
    <div className="atl-viewer-wrap">
      {ready ? (
        <model-viewer
          ref={ref}
          src={src}
          alt={alt}
          data-atelier-viewer="1"
          camera-controls=""
          touch-action="pan-y"
          interaction-prompt="none"
          camera-orbit={HOME_ORBIT}
          environment-image={L.env}
          exposure={L.exposure}
          shadow-intensity={L.shadow}
          shadow-softness={L.softness}
          auto-rotate={spin ? "" : undefined}
          style={{ width: "100%", height: "340px", display: "block" }}
          class="atl-viewer"
        ></model-viewer>
      ) : (
        <div className="atl-viewer atl-placeholder"><Loader2 className="atl-spin" size={18} /> Loading the viewer…</div>
      )}
      {state === "error" && <div className="atl-note">The model could not be shown; it can still be downloaded.</div>}
      <div className="atl-toolbar">
        <Button variant="outline" size="sm" onClick={reset} title="Back to the front view (drag: orbit · wheel: zoom · right-drag: pan)">
          <RotateCcw size={14} /> Reset view
        </Button>
        <Button variant="outline" size="sm" onClick={() => setLight((light + 1) % LIGHTS.length)} title="Change the lighting">
          <Lightbulb size={14} /> Light: {L.name}
        </Button>
        <Button variant={spin ? "default" : "outline"} size="sm" onClick={() => setSpin(!spin)} title="Turntable">
          <RotateCw size={14} /> Spin
        </Button>
        <a className="atl-link-button" href={withDownload(src)} download={file} data-atelier-download="model">
          <Download size={14} /> GLB
        </a>
        {imageUrl && (
          <a className="atl-link-button" href={withDownload(imageUrl)} download={imageFile} data-atelier-download="image">
            <Download size={14} /> Image
          </a>
        )}
      </div>
    </div>
  );
}

function when(iso) {
  try {
    return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  } catch (e) {
    return iso || "";
  }
}

export default function Creation() {
  const p = props || {};
  const [remixOpen, setRemixOpen] = useState(false);
  const [change, setChange] = useState("");
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState("");

  const open = (id) => callAction({ name: "open_creation", payload: { id } });
  const remix = async (e) => {
    if (e) e.preventDefault();
    if (!change.trim() || busy) return;
    setBusy(true);
    try {
      const res = await callAction({ name: "remix", payload: { id: p.id, change } });
      if (res && res.response && res.response.ok) {
        setSent(change);
        setChange("");
        setRemixOpen(false);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="atl-card" data-atelier-creation={p.id} data-status={p.status}>
      <div className="atl-head">
        <div className="atl-title">{p.prompt}</div>
        <div className="atl-meta">{when(p.created_at)} · <code>{p.id}</code></div>
      </div>
      {p.enhanced_prompt && p.enhanced_prompt !== p.prompt && <div className="atl-prompt">{p.enhanced_prompt}</div>}
      <div className="atl-media">
        <div className="atl-pane">
          {p.image_url ? (
            <img className="atl-image" src={p.image_url} alt={p.prompt} data-atelier-image="1" />
          ) : (
            <div className="atl-placeholder atl-image"><ImageIcon size={18} /> No image</div>
          )}
          <div className="atl-caption">
            image: {p.image_backend || "—"}{p.is_sketch ? " (placeholder sketch)" : ""}
          </div>
        </div>
        <div className="atl-pane">
          {p.model_url ? (
            <Viewer src={p.model_url} alt={`3D model of ${p.prompt}`} file={p.model_file} imageUrl={p.image_url} imageFile={p.image_file} />
          ) : p.status === "making3d" ? (
            <div className="atl-viewer atl-placeholder"><Loader2 className="atl-spin" size={18} /> Making the 3D model…</div>
          ) : (
            <div className="atl-viewer atl-placeholder"><Box size={18} /> No 3D model yet — ask “make it 3D”.</div>
          )}
          {p.model_url && <div className="atl-caption">3D model: {p.model_backend}</div>}
        </div>
      </div>
      {(p.assets || []).map((a) => (
        /* the kinds tools added (ui/views.other_assets): drawn by the kind's generic renderer */
        <div className="atl-asset" key={a.kind} data-atelier-asset={a.kind}>
          {a.renderer === "image" ? (
            <img className="atl-image" src={a.url} alt={`${a.label} of ${p.prompt}`} />
          ) : a.renderer === "text" && a.text != null ? (
            <div className="atl-prompt"><b>{a.label}:</b> {a.text}</div>
          ) : (
            <a href={a.url} target="_blank" rel="noreferrer">{a.label}</a>
          )}
          <div className="atl-caption">{a.label}: {a.backend}</div>
        </div>
      ))}
      {(p.notes || []).map((n, i) => (
        <div className="atl-note" key={i}>⚠ {n}</div>
      ))}
      {p.detail && (
        <div className="atl-lineage" data-atelier-lineage="1">
          <div>
            <b>Remixed from:</b>{" "}
            {p.parent ? <a href="#" onClick={(e) => { e.preventDefault(); open(p.parent.id); }}>{p.parent.prompt}</a> : "— (an original idea)"}
          </div>
          <div>
            <b>Remixes of it:</b>{" "}
            {(p.children || []).length
              ? p.children.map((c, i) => (
                  <span key={c.id}>
                    {i > 0 && " · "}
                    <a href="#" onClick={(e) => { e.preventDefault(); open(c.id); }}>{c.prompt}</a>
                  </span>
                ))
              : "none yet"}
          </div>
        </div>
      )}
      <div className="atl-actions">
        {!remixOpen && (
          <Button size="sm" onClick={() => setRemixOpen(true)} data-atelier-remix="1">
            <Shuffle size={14} /> Remix this
          </Button>
        )}
        {!p.detail && (
          <Button size="sm" variant="outline" onClick={() => open(p.id)}>
            <Info size={14} /> Details & lineage
          </Button>
        )}
        {!p.model_url && p.image_url && (
          <a className="atl-link-button" href={withDownload(p.image_url)} download={p.image_file}>
            <Download size={14} /> Image
          </a>
        )}
      </div>
      {remixOpen && (
        <form className="atl-remix" onSubmit={remix}>
          <Input autoFocus value={change} onChange={(e) => setChange(e.target.value)} placeholder="What should change? e.g. with wings, at night" />
          <Button size="sm" type="submit" disabled={busy || !change.trim()}>{busy ? "…" : "Remix"}</Button>
          <Button size="sm" variant="ghost" type="button" onClick={() => setRemixOpen(false)}>Cancel</Button>
        </form>
      )}
      {sent && <div className="atl-caption">Remix started: “{sent}” ↓</div>}
    </div>
  );
}
