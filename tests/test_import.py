"""Import: every malformed file is rejected with a message a person can act on, and
nothing changes; good files load all or nothing, idempotently, undoably.

Each malformed case runs the command-line loader (the same code path as the page)
against a store holding the tiny table, and checks the exit code, the message, and
that every table is byte-for-byte unchanged.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from data import importer
from data.load import main as load_main
from data.store import TABLES, Store
from tests.conftest import tiny_frames

HEADER = "order_id,customer_id,ordered_at,revenue,status,channel"
TONES = "\u0300\u0301\u0303\u0309\u0323"  # the combining tone marks Windows-1258 has


def to_cp1258(text: str) -> bytes:
    """Encode as Windows-1258 the way Vietnamese Windows does: letters with a circumflex,
    breve or horn stay precomposed, tone marks are written as combining characters."""
    import unicodedata

    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            d = unicodedata.normalize("NFD", ch)
            tones = "".join(m for m in d[1:] if m in TONES)
            base = unicodedata.normalize("NFC", d[0] + "".join(m for m in d[1:] if m not in TONES))
            out += (base + tones).encode("cp1258")
    return bytes(out)


def snapshot(db: Path) -> dict[str, list]:
    s = Store(db)
    try:
        return {name: s.query(f"SELECT * FROM {name} ORDER BY ALL").rows()
                for name in [*TABLES, "imports", "quarantine"]}
    finally:
        s.close()


@pytest.fixture()
def db(tmp_path) -> Path:
    path = tmp_path / "w.duckdb"
    s = Store(path)
    s.load_frames(tiny_frames(), kind="test")
    s.close()
    return path


def run(db: Path, tmp_path: Path, content: bytes | str, *args: str, kind: str = "orders", name: str = "f.csv", capsys=None):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    code = load_main([kind, str(path), "--db", str(db), *args])
    out = capsys.readouterr() if capsys else None
    return code, (out.out + out.err) if out else ""


def csv_rows(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


GOOD = "X1,A,2024-05-01 10:00,100000,completed,website"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hi")
    return buf.getvalue()


MALFORMED = [
    ("empty file", b"", "orders", "empty"),
    ("whitespace only", b"  \n \r\n", "orders", "empty"),
    ("header only", csv_rows(), "orders", "no data rows"),
    ("png renamed csv", PNG, "orders", "PNG"),
    ("zip renamed csv", _zip(), "orders", "zip"),
    ("nul bytes", csv_rows(GOOD).encode() + b"\x00\x00", "orders", "NUL"),
    ("too many fields", csv_rows(GOOD, "X2,A,2024-05-01,1,completed,web,extra"), "orders", "different number of fields"),
    ("too few fields", csv_rows(GOOD, "X2,A,2024-05-01"), "orders", "different number of fields"),
    ("unterminated quote", csv_rows(GOOD, 'X2,A,2024-05-01,"100,completed,web'), "orders", "unterminated"),
    ("duplicate headers", csv_rows("X1,A,2024-05-01,1,completed,web", header=HEADER.replace("channel", "revenue")), "orders", "appears twice"),
    ("missing required column", "order_id,customer_id,ordered_at,status\nX1,A,2024-05-01,completed\n", "orders", "no column for revenue"),
    ("empty header", csv_rows("X1,A,2024-05-01,1,completed,web", header=HEADER.replace("channel", "")), "orders", "has no header"),
    ("duplicate key, other values", csv_rows(GOOD, "X1,A,2024-05-01 10:00,999,completed,website"), "orders", "line 2"),
    ("negative revenue", csv_rows("X1,A,2024-05-01,-5000,completed,web"), "orders", "must be at least 0"),
    ("31 February", csv_rows("X1,A,31/02/2024,1000,completed,web"), "orders", "not a date"),
    ("future date", csv_rows("X1,A,2099-01-01,1000,completed,web"), "orders", "in the future"),
    ("mixed date orders", csv_rows("X1,A,31/01/2024,1,completed,web", "X2,A,01/31/2024,1,completed,web"), "orders", "contradicts itself"),
    ("unknown status", csv_rows("X1,A,2024-05-01,1000,đang xử lý lạ,web"), "orders", "unknown order status"),
    ("missing status", csv_rows("X1,A,2024-05-01,1000,,web"), "orders", "line 2"),
    ("bad amount", csv_rows("X1,A,2024-05-01,12abc,completed,web"), "orders", "not an amount"),
    ("missing order id", csv_rows(",A,2024-05-01,1000,completed,web"), "orders", "required value is missing"),
    ("missing customer id", csv_rows("X1,,2024-05-01,1000,completed,web"), "orders", "required value is missing"),
    ("injection header", 'order_id,"a""; DROP TABLE orders;--"\nX1,x\n', "orders", "no column for customer_id"),
    ("nps out of range", "response_id,responded_at,nps\nR9,2024-05-01,11\n", "survey_responses", "at most 10"),
    ("csat zero", "response_id,responded_at,csat\nR9,2024-05-01,0\n", "survey_responses", "at least 1"),
    ("no score", "response_id,responded_at,nps,comment\nR9,2024-05-01,,hello\n", "survey_responses", "no NPS"),
    ("nps not a number", "response_id,responded_at,nps\nR9,2024-05-01,ten\n", "survey_responses", "not a whole number"),
    ("self referral", "referral_id,referrer_id,referred_id,referred_at\nF1,A,A,2024-05-01\n", "referrals", "refer themselves"),
    ("cost period reversed", "cost_id,programme,period_start,period_end,amount\nC9,loyalty,2024-05-31,2024-05-01,100\n",
     "programme_costs", "ends before it starts"),
    ("unknown programme", "cost_id,programme,period_start,period_end,amount\nC9,tv ads,2024-05-01,2024-05-31,100\n",
     "programme_costs", "not one of"),
    ("unknown event kind", "event_id,customer_id,occurred_at,kind,points\nE9,A,2024-05-01,gift,10\n", "loyalty_events", "not one of"),
    ("bad phone", "customer_id,phone\nZ9,12345\n", "customers", "not a Vietnamese phone number"),
    ("bad email", "customer_id,email\nZ9,not-an-email\n", "customers", "not an email address"),
    ("bad signup date", "customer_id,signup_date\nZ9,2024-13-01\n", "customers", "not a date"),
]


@pytest.mark.parametrize("label,content,kind,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_rejected_and_changes_nothing(db, tmp_path, capsys, label, content, kind, message):
    before = snapshot(db)
    code, out = run(db, tmp_path, content, kind=kind, capsys=capsys)
    assert code == 1, out
    assert message.lower() in out.lower(), out
    assert "Traceback" not in out
    assert snapshot(db) == before


def test_a_bad_value_deep_in_the_file_is_reported_with_its_line(db, tmp_path, capsys):
    rows = [f"Y{i},A,2024-05-01 10:00,1000,completed,web" for i in range(1, 30_001)]
    rows[24_999] = "Y25000,A,2024-05-01 10:00,1O00,completed,web"  # letter O, not zero
    before = snapshot(db)
    code, out = run(db, tmp_path, csv_rows(*rows), capsys=capsys)
    assert code == 1
    assert "line 25001, column “revenue”, value “1O00”: not an amount" in out
    assert snapshot(db) == before


def test_quoted_newlines_keep_the_files_own_line_numbers(db, tmp_path, capsys):
    content = ('response_id,responded_at,nps,comment\n'
               'R7,2024-05-01,9,"Giao nhanh,\nđóng gói đẹp"\n'
               'R8,2024-05-02,99,ok\n')
    code, out = run(db, tmp_path, content, kind="survey_responses", capsys=capsys)
    assert code == 1
    assert "line 4, column “nps”, value “99”" in out


def test_a_20_mb_cell_is_refused(db, tmp_path, capsys):
    before = snapshot(db)
    code, out = run(db, tmp_path, csv_rows('X1,A,2024-05-01,1000,completed,"' + "x" * 20_000_000 + '"'), capsys=capsys)
    assert code == 1 and "larger than 1 MB" in out
    assert snapshot(db) == before


def test_usage_errors_exit_2(db, tmp_path):
    with pytest.raises(SystemExit) as e:
        load_main(["orders", str(tmp_path / "missing.csv"), "--db", str(db)])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        load_main(["invoices", str(tmp_path / "missing.csv")])
    assert e.value.code == 2
    (tmp_path / "f.csv").write_text(csv_rows(GOOD))
    with pytest.raises(SystemExit) as e:
        load_main(["orders", str(tmp_path / "f.csv"), "--map", "nonsense"])
    assert e.value.code == 2


def test_a_good_file_loads_and_a_second_load_changes_nothing(db, tmp_path, capsys):
    content = csv_rows(GOOD, "X2,NEW,2024-05-02 11:00,250000,completed,shopee")
    code, out = run(db, tmp_path, content, capsys=capsys)
    assert code == 0 and "loaded 2 rows into orders" in out
    after_first = snapshot(db)
    code, out = run(db, tmp_path, content, capsys=capsys)
    assert code == 0 and "loaded 0 rows" in out
    second = snapshot(db)
    assert {k: v for k, v in second.items() if k != "imports"} == {k: v for k, v in after_first.items() if k != "imports"}
    s = Store(db)
    assert s.query("SELECT customer_id, name FROM customers WHERE customer_id = 'NEW'").rows() == [("NEW", None)]
    s.close()


def test_dry_run_changes_nothing(db, tmp_path, capsys):
    before = snapshot(db)
    code, out = run(db, tmp_path, csv_rows(GOOD), "--dry-run", capsys=capsys)
    assert code == 0 and "would load" in out
    assert snapshot(db) == before


def test_vietnamese_export_with_aliases_cp1258_semicolons_and_dd_mm(db, tmp_path, capsys):
    text = ("Mã đơn hàng;Mã khách hàng;Ngày đặt hàng;Thành tiền;Trạng thái;Kênh bán\n"
            "DH01;A;05/03/2024 14:30;1.234.567 ₫;Hoàn thành;Shopee\n"
            "DH02;B;06/03/2024 09:00;250.000;Đã hủy;Cửa hàng\n")
    raw = to_cp1258(text)
    assert raw.decode("utf-8", errors="replace") != text  # really not UTF-8
    code, out = run(db, tmp_path, raw, capsys=capsys)
    assert code == 0, out
    assert "read day first" in out  # 05/03 and 06/03 are ambiguous: the workspace setting decides
    s = Store(db)
    rows = s.query("SELECT order_id, ordered_at, revenue, status, channel FROM orders WHERE order_id LIKE 'DH%' ORDER BY 1").rows()
    s.close()
    assert rows == [("DH01", datetime(2024, 3, 5, 14, 30), 1234567.0, "completed", "shopee"),
                    ("DH02", datetime(2024, 3, 6, 9, 0), 250000.0, "cancelled", "store")]


def test_utf16_tab_separated_file(db, tmp_path, capsys):
    text = "order_id\tcustomer_id\tordered_at\trevenue\tstatus\nU1\tA\t2024-05-01\t1000\tpaid\n"
    code, out = run(db, tmp_path, text.encode("utf-16"), capsys=capsys, name="u.txt")
    assert code == 0, out


def test_map_flag_names_a_header(db, tmp_path, capsys):
    content = "id,ts,score\nQ1,2024-05-01 10:00,9\n"
    code, out = run(db, tmp_path, content, "--map", "response_id=id", "--map", "responded_at=ts",
                    "--map", "nps=score", kind="survey_responses", capsys=capsys)
    assert code == 0, out


def test_accept_valid_loads_the_rest_and_quarantines_the_rejected(db, tmp_path, capsys):
    content = csv_rows(GOOD, "X2,A,31/02/2024,1000,completed,web")
    code, out = run(db, tmp_path, content, "--accept-valid", capsys=capsys)
    assert code == 0 and "1 row quarantined" in out
    s = Store(db)
    assert s.quarantine().select("line", "column", "value").rows() == [(3, "ordered_at", "31/02/2024")]
    iid = int(s.imports()["import_id"][0])
    s.undo_import(iid)
    assert s.quarantine().height == 0
    s.close()


def test_undo_after_a_load_restores_the_tables_exactly(db, tmp_path, capsys):
    before = snapshot(db)
    newer = "O3,A,2024-03-05 10:00,300,refunded,shopee"
    run(db, tmp_path, csv_rows(newer, GOOD), capsys=capsys)
    s = Store(db)
    iid = int(s.imports()["import_id"][0])
    assert s.query("SELECT status FROM orders WHERE order_id = 'O3'").rows() == [("refunded",)]
    s.undo_import(iid)
    s.close()
    after = snapshot(db)
    assert {k: v for k, v in after.items() if k != "imports"} == {k: v for k, v in before.items() if k != "imports"}


def test_excel_safe_report_csv():
    problems = pl.DataFrame({"line": [2], "column": ["=cmd"], "value": ["=HYPERLINK(\"x\")"], "rule": ["r"], "reason": ["-1"]})
    data = importer.to_excel_csv(problems)
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'=cmd" in text and "'-1" in text and "\n2," in text


def _xlsx(rows: list[list]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_xlsx_with_vietnamese_headers_loads(db, tmp_path, capsys):
    data = _xlsx([
        ["Mã đơn hàng", "Mã khách hàng", "Ngày đặt hàng", "Thành tiền", "Trạng thái"],
        ["SP1", "A", datetime(2024, 5, 1, 9, 30), 1234567, "Hoàn thành"],
        [None, None, None, None, None],
        ["SP2", "B", datetime(2024, 5, 2, 10, 0), 99000.0, "Đã hủy"],
    ])
    code, out = run(db, tmp_path, data, name="shopee.xlsx", capsys=capsys)
    assert code == 0, out
    s = Store(db)
    assert s.query("SELECT order_id, revenue, status FROM orders WHERE order_id LIKE 'SP%' ORDER BY 1").rows() == [
        ("SP1", 1234567.0, "completed"), ("SP2", 99000.0, "cancelled")]
    s.close()


def test_xlsx_errors_carry_excel_row_numbers(db, tmp_path, capsys):
    data = _xlsx([["order_id", "customer_id", "ordered_at", "revenue", "status"],
                  ["SP1", "A", "2024-05-01", 100, "completed"],
                  ["SP2", "A", "2024-05-01", -100, "completed"]])
    code, out = run(db, tmp_path, data, name="x.xlsx", capsys=capsys)
    assert code == 1 and "line 3, column “revenue”" in out


def test_xlsx_zip_bomb_and_xml_entities_are_refused(db, tmp_path, capsys):
    before = snapshot(db)
    # A zip that claims a 2 GB sheet inside a small archive.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            chunk = b"0" * (1 << 24)
            for _ in range(70):  # 1.1 GB of zeros, a few MB compressed
                f.write(chunk)
    code, out = run(db, tmp_path, buf.getvalue(), name="bomb.xlsx", capsys=capsys)
    assert code == 1 and "zip bomb" in out
    # A billion-laughs style entity in the workbook XML.
    good = _xlsx([["order_id"], ["1"]])
    zin = zipfile.ZipFile(io.BytesIO(good))
    out_buf = io.BytesIO()
    with zipfile.ZipFile(out_buf, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item.filename)
            if item.filename in ("xl/workbook.xml", "xl/worksheets/sheet1.xml"):
                body = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>' + body
            zout.writestr(item, body)
    code, out = run(db, tmp_path, out_buf.getvalue(), name="laughs.xlsx", capsys=capsys)
    assert code == 1 and "refused" in out
    assert snapshot(db) == before


def test_killing_the_loader_mid_import_leaves_the_prior_state(db, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    before = snapshot(db)
    marker = tmp_path / "inside"
    big = tmp_path / "big.csv"
    big.write_text(csv_rows(*[f"K{i},A,2024-05-01 10:00,1000,completed,web" for i in range(20_000)]))
    env = {**os.environ, "CM_TEST_HOLD_IN_TRANSACTION": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "data.load", "orders", str(big), "--db", str(db), "--mode", "replace"],
                            cwd=Path(__file__).resolve().parent.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, "the loader ended before reaching the transaction"
        assert time.time() < deadline, "the loader never reached the transaction"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert snapshot(db) == before  # every row of the half-done import is gone


def test_quoted_newline_in_a_semicolon_file_keeps_line_numbers():
    # Found by the property test: line numbers must be counted with the file's own delimiter.
    content = 'order_id;customer_id;ordered_at;revenue;status;category\nO1;C;2024-01-01;10;completed;"a\nb"\nO2;C;2024-01-01;-5;completed;x\n'
    report = importer.check_file(content.encode(), "semi.csv", "orders")
    assert report.problems.select("line", "column").rows() == [(4, "revenue")]


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "presets"


@pytest.mark.parametrize("fixture,kind,preset", [
    ("shopify_orders.csv", "orders", "Shopify orders"),
    ("shopee_orders.csv", "orders", "Shopee orders"),
    ("tiktok_shop_orders.csv", "orders", "TikTok Shop"),
    ("kiotviet_orders.csv", "orders", "KiotViet"),
    ("woocommerce_orders_csv.csv", "orders", "WooCommerce"),
    ("shopify_customers.csv", "customers", "Shopify customers"),
    ("google_forms_vi.csv", "survey_responses", "Google Forms"),
    ("typeform.csv", "survey_responses", "Typeform"),
    ("surveymonkey.csv", "survey_responses", "SurveyMonkey"),
    ("qualtrics.csv", "survey_responses", "Qualtrics"),
])
def test_preset_exports_are_recognised_and_read_end_to_end(fixture, kind, preset):
    report = importer.check_file((FIXTURES / fixture).read_bytes(), fixture, kind)
    assert report.notes[0].startswith("Recognised as") and preset in report.notes[0]
    assert report.valid.height >= 2
    assert set(report.problems["reason"].to_list()) <= {"unknown order status", "a required value is missing"}


def test_shopify_line_items_count_each_order_once(db, tmp_path, capsys):
    report = importer.check_file((FIXTURES / "shopify_orders.csv").read_bytes(), "shopify_orders.csv", "orders")
    ids = report.valid["order_id"].to_list()
    assert len(ids) == len(set(ids))  # one row per Name, its Total counted once
    code, out = run(db, tmp_path, (FIXTURES / "shopify_orders.csv").read_bytes(), "--accept-valid", capsys=capsys)
    assert code == 0 and "Recognised as Shopify orders export" in out


def test_the_loader_uses_a_mapping_confirmed_on_the_page(db, tmp_path, capsys):
    headers = ["Số HĐ", "KH", "Lúc", "Tiền (VND)", "TT"]
    odd = ",".join(headers) + "\nW7,A,2024-05-01 10:00,1000,paid\n"
    code, out = run(db, tmp_path, odd, capsys=capsys)
    assert code == 1 and "no column for order_id" in out
    s = Store(db)
    s.remember_mapping("orders", importer.header_signature(headers),
                       {"order_id": "Số HĐ", "customer_id": "KH", "ordered_at": "Lúc", "revenue": "Tiền (VND)", "status": "TT"})
    s.close()
    code, out = run(db, tmp_path, odd, capsys=capsys)
    assert code == 0 and "as you confirmed" in out and "loaded 1 row " in out


def test_suggestions_rank_likely_headers_first():
    from data.kinds import KINDS

    got = importer.suggest(KINDS["orders"], ["Ma don", "Ngay dat", "Tong tien thanh toan", "Ghi chu"], ["order_id", "revenue"])
    assert got["order_id"][0] == "Ma don" and got["revenue"][0] == "Tong tien thanh toan"


def test_headers_differing_only_in_case_are_both_kept():
    # Real Shopee exports: a per-item and a per-order total whose headers differ in case only.
    content = ("Mã đơn hàng,Mã khách hàng,Ngày đặt hàng,Trạng thái,Tổng số tiền Người mua thanh toán,"
               "Tổng số tiền người mua thanh toán\nS1,A,2024-05-01,Hoàn thành,100,250\n")
    report = importer.check_file(content.encode(), "shopee.csv", "orders",
                                 explicit={"revenue": "Tổng số tiền người mua thanh toán (2)"})
    assert report.ok and report.valid["revenue"].to_list() == [250.0]
    with pytest.raises(importer.FileProblem, match="appears twice"):
        importer.check_file(b"order_id,order_id\n1,2\n", "dup.csv", "orders")


def test_surveymonkey_blank_question_headers_are_filled_from_the_second_row():
    content = ("Respondent ID,Collector ID,Start Date,End Date,Which channels do you use?,,"
               "How likely is it that you would recommend this company to a friend or colleague?\n"
               ",,,,Zalo,Facebook,Response\n"
               "101,9,05/01/2024 10:00:00 AM,05/01/2024 10:05:00 AM,Zalo,,9\n")
    report = importer.check_file(content.encode(), "sm.csv", "survey_responses")
    assert report.ok, report.problems
    assert "SurveyMonkey" in report.notes[0]
    assert "Which channels do you use? – Facebook" in report.ignored
