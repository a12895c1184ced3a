"""`report:` section of the params schema."""
from bitlens.config import Field, MapOf  # noqa: F401

REPORT = {
    "enabled": Field(bool, True, help="run the report stages in this profile"),
}
