"""Closed windows judged: partials from every source merged per series and window, the detectors, the
alert engine, who drives an excess."""
