import { useState } from "react";
import { Button } from "@/components/ui/button";
import { Textarea } from "@/components/ui/textarea";
import { Check, Pencil } from "lucide-react";

// Human in the loop: the graph is paused after enhance_prompt until the prompt is accepted or edited.
export default function ReviewPrompt() {
  const original = (props && props.enhanced_prompt) || "";
  const [text, setText] = useState(original);
  const edited = text.trim() && text.trim() !== original.trim();
  return (
    <div className="atl-card atl-review" data-atelier-review="1">
      {props && props.idea && <div className="atl-meta">Your idea: “{props.idea}”</div>}
      <Textarea value={text} onChange={(e) => setText(e.target.value)} rows={4} data-atelier-review-text="1" />
      <div className="atl-actions">
        <Button size="sm" onClick={() => submitElement({ action: "accept" })} data-atelier-accept="1">
          <Check size={14} /> Use this prompt
        </Button>
        <Button size="sm" variant="outline" disabled={!edited} onClick={() => submitElement({ prompt: text })} data-atelier-edit="1">
          <Pencil size={14} /> Use my edit
        </Button>
      </div>
    </div>
  );
}
