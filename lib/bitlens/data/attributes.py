"""Names of attribute columns: the SUN Attribute Database's 102 attributes ship with the kit.

SUN-120K's list files (`dph_*_attr_closed.txt`) carry 102 attribute columns without names. Their order is the SUN
Attribute Database's (`attributes.mat`); column 67 (1-based) is `ocean`, the attribute the authors' `sun_eval.m`
retrieves. A params `attribute_names` value is a list of names, or `sun` for these.
"""
from __future__ import annotations

from typing import Sequence

SUN_ATTRIBUTES: tuple[str, ...] = (
    'sailing/ boating', 'driving', 'biking', 'transporting things or people', 'sunbathing', 'vacationing/ touring',
    'hiking', 'climbing', 'camping', 'reading', 'studying/ learning', 'teaching/ training', 'research', 'diving',
    'swimming', 'bathing', 'eating', 'cleaning', 'socializing', 'congregating', 'waiting in line/ queuing',
    'competing', 'sports', 'exercise', 'playing', 'gaming', 'spectating/ being in an audience', 'farming',
    'constructing/ building', 'shopping', 'medical activity', 'working', 'using tools', 'digging',
    'conducting business', 'praying', 'fencing', 'railing', 'wire', 'railroad', 'trees', 'grass', 'vegetation',
    'shrubbery', 'foliage', 'leaves', 'flowers', 'asphalt', 'pavement', 'shingles', 'carpet', 'brick', 'tiles',
    'concrete', 'metal', 'paper', 'wood (not part of a tree)', 'vinyl/ linoleum', 'rubber/ plastic', 'cloth', 'sand',
    'rock/stone', 'dirt/soil', 'marble', 'glass', 'waves/ surf', 'ocean', 'running water', 'still water', 'ice',
    'snow', 'clouds', 'smoke', 'fire', 'natural light', 'direct sun/sunny', 'electric/indoor lighting', 'aged/ worn',
    'glossy', 'matte', 'sterile', 'moist/ damp', 'dry', 'dirty', 'rusty', 'warm', 'cold', 'natural', 'man-made',
    'open area', 'semi-enclosed area', 'enclosed area', 'far-away horizon', 'no horizon', 'rugged scene',
    'mostly vertical components', 'mostly horizontal components', 'symmetrical', 'cluttered space', 'scary',
    'soothing', 'stressful',
)

NAMED = {"sun": SUN_ATTRIBUTES}


def resolve_names(value: str | Sequence[str] | None, count: int | None = None, key: str = "attribute_names"):
    """The attribute names a params value stands for (None when it names none). `count`, when known, is the
    number of attribute columns the data has: a list of another length is an error naming `key`."""
    if value is None or value == []:
        return None
    if isinstance(value, str):
        if value not in NAMED:
            raise ValueError(f"{key} = {value!r}: give a list of names or one of {', '.join(NAMED)}")
        names = list(NAMED[value])
    else:
        names = [str(v) for v in value]
    if count is not None and len(names) != count:
        raise ValueError(f"{key} names {len(names)} attributes but the data has {count} attribute columns")
    return names
