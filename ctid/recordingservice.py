"""Wiring of recording, recording access and the survey into the daemon (called by ``makeService``)."""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from ctid.acd import CHINA_AREA_CODES
from ctid.recordaccess import RecordingAccess, download_service
from ctid.recording import RecordingDesk
from ctid.survey import SurveyDesk


def install_recording(root: MultiService, config: Any, model: Any, board: Any, center: Any, pbx: Any, desk: Any,
                      records: Any, pool: Any, reactor: Any) -> tuple[RecordingDesk, RecordingAccess, SurveyDesk]:
    """Register the recording and survey commands on ``desk``; add the download server to ``root`` when set.

    Build after the records (the index rows come from them) and the call
    center (whose deliveries tell which leg is the customer's).
    """
    settings = config.recording
    recorder = RecordingDesk(settings, model, board, center, pbx, desk, records, reactor)
    access = RecordingAccess(settings, pool, desk.directory, board, pbx, desk, records, reactor,
                             cities=(dict(config.acd.cities) or CHINA_AREA_CODES).values())
    if settings.download_endpoint:
        download_service(access, settings.download_endpoint, reactor).setServiceParent(root)

    def flow_loaded(name: str) -> bool:
        return "ivr" in root.namedServices and name in root.getServiceNamed("ivr").library.flows

    survey = SurveyDesk(settings, model, board, center, pbx, desk, flow_loaded)
    if settings.survey == "after_every_call":
        center.survey_flow = settings.survey_flow
    return recorder, access, survey
