"""`dissect:` section of the params schema."""
from bitlens.config import Field, MapOf  # noqa: F401

DISSECT = {
    "enabled": Field(bool, True, help="run the dissect stages in this profile"),
}
