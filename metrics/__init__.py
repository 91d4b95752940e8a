"""Pure computation over the store: filters, KPIs, statistics and the metric catalogue.
Nothing here imports Streamlit or Plotly."""
import os as _os


def _one_blas_thread() -> None:
    """Run BLAS (numpy's and scipy's OpenBLAS) on one thread, unless the environment
    sets its threads (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``).

    Our linear algebra is small: a propensity model on tens of thousands of rows,
    fits on short vectors. OpenBLAS's extra threads gain nothing there and, between
    calls, spin on the cores DuckDB's queries run on beside them: at 10 million
    orders on 2 cores they took about 6% of the CPU of the Loyalty page's computation
    (perf), which ran 0.25 s faster without them. The variable covers libraries loaded
    later (scipy's own OpenBLAS); threadpoolctl those already loaded."""
    if "OPENBLAS_NUM_THREADS" in _os.environ or "OMP_NUM_THREADS" in _os.environ:
        return
    _os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


_one_blas_thread()
