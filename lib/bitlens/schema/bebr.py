"""`bebr:` section of the params schema."""
from bitlens.config import Field, MapOf  # noqa: F401

BEBR = {
    "enabled": Field(bool, True, help="run the bebr stages in this profile"),
}
