"""Entry point: the router and the frame.

Draws the sidebar (language, global filters, display settings; all mirrored in the URL)
and runs the selected page. Pages read the resolved context from pages.ui.frame.
"""

from __future__ import annotations

import streamlit as st

from pages.ui import frame
from pages.ui.i18n import t

st.set_page_config(page_title="Customer marketing", page_icon=":material/loyalty:", layout="wide")

ctx = frame.sidebar()
# Page files are named <name>_page.py and served at url_path <name>: a url_path equal to
# a file stem in pages/ would let Streamlit's legacy pages-directory mode run that file
# without this router (tests/test_app.py checks the rule).
pages = [
    st.Page("pages/overview_page.py", title=t("nav.overview", ctx.lang), icon=":material/dashboard:", url_path="overview", default=True),
    st.Page("pages/retention_page.py", title=t("nav.retention", ctx.lang), icon=":material/autorenew:", url_path="retention"),
    st.Page("pages/data_page.py", title=t("nav.data", ctx.lang), icon=":material/database:", url_path="data"),
]
st.navigation(pages).run()
