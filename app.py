"""Entry point: the router and the frame.

Draws the sidebar (language, global filters, display settings; all mirrored in the URL)
and runs the selected page. Pages read the resolved context from pages.ui.frame.
"""

from __future__ import annotations

import sys

import streamlit as st

if __name__ == "__main__" and not st.runtime.exists():
    # `python app.py [options]` starts the server (what tasks.py and the tests do).
    # Streamlit would treat the first run as a legacy pages-directory app (pages/
    # exists), and a deep link such as /retention would then show "Page not found"
    # before this router runs; st.navigation below turns that mode off, and so does
    # this, before the first run. `streamlit run app.py` works too, with that dialog.
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    from data.config import auth_configured

    hosted = ["--client.showErrorDetails=none", "--client.toolbarMode=viewer"] if auth_configured() else []
    from pages.ui import warmup

    warmup.start_in_background()  # fills the pages' caches once the server answers
    sys.argv = ["streamlit", "run", __file__, *hosted, *sys.argv[1:]]
    sys.exit(cli.main())

from data.config import auth_configured  # noqa: E402
from pages.ui import frame  # noqa: E402

if auth_configured():
    # Hosted: a person sees that something failed, never a traceback with paths or data.
    st.set_option("client.showErrorDetails", "none")
from pages.ui.i18n import t  # noqa: E402

st.set_page_config(page_title="Customer marketing", page_icon=":material/loyalty:", layout="wide")

ctx = frame.sidebar()
# Page files are named <name>_page.py and served at url_path <name>: a url_path equal to
# a file stem in pages/ would let Streamlit's legacy pages-directory mode run that file
# without this router (tests/test_app.py checks the rule).
pages = [
    st.Page("pages/overview_page.py", title=t("nav.overview", ctx.lang), icon=":material/dashboard:", url_path="overview", default=True),
    st.Page("pages/retention_page.py", title=t("nav.retention", ctx.lang), icon=":material/autorenew:", url_path="retention"),
    st.Page("pages/clv_page.py", title=t("nav.clv", ctx.lang), icon=":material/savings:", url_path="clv"),
    st.Page("pages/churn_page.py", title=t("nav.churn", ctx.lang), icon=":material/trending_down:", url_path="churn"),
    st.Page("pages/loyalty_page.py", title=t("nav.loyalty", ctx.lang), icon=":material/loyalty:", url_path="loyalty"),
    st.Page("pages/segments_page.py", title=t("nav.segments", ctx.lang), icon=":material/groups:", url_path="segments"),
    st.Page("pages/surveys_page.py", title=t("nav.surveys", ctx.lang), icon=":material/reviews:", url_path="surveys"),
    st.Page("pages/data_page.py", title=t("nav.data", ctx.lang), icon=":material/database:", url_path="data"),
    st.Page("pages/team_page.py", title=t("nav.team", ctx.lang), icon=":material/admin_panel_settings:", url_path="team"),
]
st.navigation(pages).run()
