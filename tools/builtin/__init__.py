"""The built-in tools, one module each: the @tool, its ToolSpec (tools/specs.py) and register_tools(register).

A new built-in tool is one module here and one line below (its module name, in the order the model is shown the
tools). Outside packages use the `atelier.tools` entry-point group instead (tools/specs.py).
"""
BUILT_IN = (
    "enhance_prompt",
    "text_to_image",
    "image_to_3d",
    "recall_similar",
)
