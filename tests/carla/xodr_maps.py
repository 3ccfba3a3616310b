"""Small OpenDRIVE maps for offline tests: ``carla.Map(name, xodr)`` builds a real carla.Map from them
without a server (waypoints, topology, lane types)."""

from __future__ import annotations


def _lanes() -> str:
    def lane(lane_id: int, kind: str, width: float, mark: str, link: bool) -> str:
        links = f'<link><predecessor id="{lane_id}"/><successor id="{lane_id}"/></link>' if link else "<link/>"
        return (f'<lane id="{lane_id}" type="{kind}" level="false">{links}'
                f'<width sOffset="0.0" a="{width}" b="0" c="0" d="0"/>'
                f'<roadMark sOffset="0" type="{mark}" weight="standard" color="standard" width="0.15"/></lane>')

    return ('<lanes><laneSection s="0.0">'
            f'<left>{lane(2, "sidewalk", 2.0, "none", True)}{lane(1, "driving", 3.5, "broken", True)}</left>'
            '<center><lane id="0" type="none" level="false"><link/>'
            '<roadMark sOffset="0" type="solid" weight="standard" color="standard" width="0.15"/></lane></center>'
            f'<right>{lane(-1, "driving", 3.5, "broken", True)}{lane(-2, "sidewalk", 2.0, "none", True)}</right>'
            '</laneSection></lanes>')


def two_road_map() -> str:
    """Road 0: 100 m straight along +x (OpenDRIVE frame); road 1: a 60 m left arc (curvature 0.01),
    then road 2: 100 m straight. Each road: one driving lane per direction (3.5 m) and sidewalks (2 m)."""
    import math

    arc_len, k = 60.0, 0.01
    hdg = arc_len * k
    x2 = 100.0 + math.sin(hdg) / k
    y2 = (1.0 - math.cos(hdg)) / k
    roads = [
        ("0", 100.0, f'<geometry s="0" x="0" y="0" hdg="0" length="100"><line/></geometry>', None, "1"),
        ("1", arc_len, f'<geometry s="0" x="100" y="0" hdg="0" length="{arc_len}"><arc curvature="{k}"/></geometry>',
         "0", "2"),
        ("2", 100.0, f'<geometry s="0" x="{x2}" y="{y2}" hdg="{hdg}" length="100"><line/></geometry>', "1", None),
    ]
    body = []
    for rid, length, geom, pred, succ in roads:
        link = ""
        if pred is not None:
            link += f'<predecessor elementType="road" elementId="{pred}" contactPoint="end"/>'
        if succ is not None:
            link += f'<successor elementType="road" elementId="{succ}" contactPoint="start"/>'
        body.append(f'<road name="r{rid}" length="{length}" id="{rid}" junction="-1"><link>{link}</link>'
                    f'<planView>{geom}</planView><elevationProfile/><lateralProfile/>{_lanes()}</road>')
    return ('<?xml version="1.0" standalone="yes"?><OpenDRIVE>'
            '<header revMajor="1" revMinor="4" name="test" version="1.00" north="0" south="0" east="0" west="0">'
            '<geoReference><![CDATA[+proj=tmerc +lat_0=0 +lon_0=0]]></geoReference></header>'
            + "".join(body) + "</OpenDRIVE>")
