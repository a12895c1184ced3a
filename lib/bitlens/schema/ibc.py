"""`ibc:` section of the params schema."""
from bitlens.config import Field, MapOf  # noqa: F401

IBC = {
    "enabled": Field(bool, True, help="run the ibc stages in this profile"),
}
