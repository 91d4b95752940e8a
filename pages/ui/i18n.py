"""Every visible string, in Vietnamese and English.

``t(key, lang, **values)`` formats a string; a test checks that every key has both
languages and that the pages use no key that is missing here.
"""

from __future__ import annotations

LANGUAGES = {"vi": "Tiếng Việt", "en": "English"}

STRINGS: dict[str, tuple[str, str]] = {
    # frame
    "app.title": ("Marketing khách hàng", "Customer marketing"),
    "nav.overview": ("Tổng quan", "Overview"),
    "nav.data": ("Dữ liệu", "Data"),
    "side.language": ("Ngôn ngữ", "Language"),
    "side.filters": ("Bộ lọc", "Filters"),
    "side.period": ("Kỳ báo cáo", "Period"),
    "side.range": ("Từ ngày – đến ngày", "From – to"),
    "side.comparison": ("So sánh với", "Compare with"),
    "side.channel": ("Kênh", "Channel"),
    "side.region": ("Khu vực", "Region"),
    "side.loyalty": ("Chương trình thành viên", "Loyalty programme"),
    "side.all": ("Tất cả", "All"),
    "side.settings": ("Cài đặt hiển thị", "Display settings"),
    "side.currency": ("Tiền tệ hiển thị", "Display currency"),
    "side.fx": ("Tỷ giá (₫ cho 1 US$)", "Exchange rate (₫ per US$)"),
    "side.window": ("Cửa sổ không hoạt động (ngày)", "Inactivity window (days)"),
    "side.window_help": (
        "Khách thuộc tập khách hàng nếu có đơn hoàn thành trong số ngày này trước thời điểm xét.",
        "A customer is in the base when they have a completed order within this many days before the date.",
    ),
    "side.as_of": ("Dữ liệu đến {date}", "Data through {date}"),
    "period.30d": ("30 ngày qua", "Last 30 days"),
    "period.90d": ("90 ngày qua", "Last 90 days"),
    "period.365d": ("365 ngày qua", "Last 365 days"),
    "period.ytd": ("Từ đầu năm", "Year to date"),
    "period.all": ("Toàn bộ", "All time"),
    "period.custom": ("Tùy chọn", "Custom"),
    "cmp.prev": ("Kỳ trước", "Previous period"),
    "cmp.yoy": ("Cùng kỳ năm trước", "Same period last year"),
    "cmp.none": ("Không so sánh", "No comparison"),
    "loyalty.all": ("Tất cả khách", "Everyone"),
    "loyalty.member": ("Thành viên", "Members"),
    "loyalty.non_member": ("Không phải thành viên", "Non-members"),
    "channel.website": ("Website", "Website"),
    "channel.shopee": ("Shopee", "Shopee"),
    "channel.zalo_oa": ("Zalo OA", "Zalo OA"),
    "channel.facebook": ("Facebook", "Facebook"),
    "channel.store": ("Cửa hàng", "Store"),
    "channel.app": ("Ứng dụng", "App"),
    "channel.referral": ("Giới thiệu", "Referral"),
    "chart.million": ("triệu {unit}", "{unit} million"),
    "caption.period": ("{start} – {end}", "{start} – {end}"),
    "caption.compare": ("so với {start} – {end}", "vs {start} – {end}"),
    "caption.filters": ("Bộ lọc: {filters}", "Filters: {filters}"),
    "empty.title": ("Chưa có dữ liệu", "No data yet"),
    "empty.body": (
        "Cơ sở dữ liệu chưa có đơn hàng nào. Vào trang Dữ liệu để tạo dữ liệu mẫu hoặc nhập tệp xuất từ cửa hàng của bạn.",
        "The database has no orders yet. Open the Data page to build the demo data or import an export from your shop.",
    ),
    "empty.link": ("Mở trang Dữ liệu", "Open the Data page"),
    "empty.filtered": (
        "Không có đơn hàng nào khớp bộ lọc trong kỳ này. Hãy nới bộ lọc hoặc chọn kỳ khác.",
        "No orders match these filters in this period. Widen the filters or pick another period.",
    ),
    # overview
    "ov.title": ("Tổng quan", "Overview"),
    "ov.headline": (
        "**{share}** doanh thu của kỳ đến từ khách quay lại (đã mua trước kỳ)",
        "**{share}** of the period's revenue came from returning customers (who had bought before the period)",
    ),
    "ov.headline_cmp": (" ({prev} ở kỳ so sánh).", " ({prev} in the comparison period)."),
    "ov.vs": ("so với kỳ so sánh", "vs comparison"),
    "ov.n": ("n = {n}", "n = {n}"),
    "ov.ci": ("Khoảng tin cậy 95%: {lo} – {hi}; cỡ mẫu n = {n}.", "95% interval: {lo} – {hi}; sample size n = {n}."),
    "ov.sample": ("Cỡ mẫu n = {n}.", "Sample size n = {n}."),
    "ov.trend": ("Xu hướng: {n} tháng trọn vẹn đến {month}.", "Trend: {n} full months to {month}."),
    "ov.no_trend": ("Chưa có tháng trọn vẹn nào để vẽ xu hướng.", "No full month yet to draw a trend."),
    "ov.kpis": ("Chỉ số chính", "Key numbers"),
    "ov.chart_title": ("Doanh thu từ khách mới và khách quay lại", "Revenue from new and returning customers"),
    "ov.new": ("Khách mới", "New customers"),
    "ov.returning": ("Khách quay lại", "Returning customers"),
    "ov.share": ("Tỷ trọng khách quay lại", "Returning share"),
    "ov.partial": ("tháng chưa trọn", "month in progress"),
    "ov.reading": (
        "Tháng {month}, khách quay lại đóng góp {share} doanh thu{cmp}.",
        "In {month}, returning customers brought {share} of revenue{cmp}.",
    ),
    "ov.reading_cmp_up": (", cao hơn {diff} so với cùng tháng năm trước", ", {diff} more than a year earlier"),
    "ov.reading_cmp_down": (", thấp hơn {diff} so với cùng tháng năm trước", ", {diff} less than a year earlier"),
    "ov.glossary": ("Định nghĩa các chỉ số", "Metric definitions"),
    "ov.definition": ("Định nghĩa", "Definition"),
    "ov.metric": ("Chỉ số", "Metric"),
    # data page
    "data.title": ("Dữ liệu", "Data"),
    "data.loaded": ("Dữ liệu đã nạp", "What is loaded"),
    "data.table": ("Bảng", "Table"),
    "data.rows": ("Số dòng", "Rows"),
    "data.first": ("Từ", "From"),
    "data.last": ("Đến", "To"),
    "data.imports": ("Lịch sử nhập dữ liệu", "Imports"),
    "data.no_imports": ("Chưa có lần nhập nào.", "No imports yet."),
    "data.last_import": ("Lần nhập gần nhất: {kind} «{file}», {rows} dòng, lúc {when}.", "Last import: {kind} “{file}”, {rows} rows, at {when}."),
    "data.where": ("Cơ sở dữ liệu: `{path}` (DuckDB, phiên bản lược đồ {version}).", "Database: `{path}` (DuckDB, schema version {version})."),
    "data.demo": ("Dữ liệu mẫu", "Demo data"),
    "data.demo_help": (
        "Tạo lại bộ dữ liệu mẫu xác định (cùng seed cho cùng kết quả). Thao tác này THAY THẾ toàn bộ dữ liệu hiện có.",
        "Rebuild the deterministic demo data (the same seed gives the same data). This REPLACES all data now loaded.",
    ),
    "data.customers": ("Số khách hàng", "Customers"),
    "data.seed": ("Seed", "Seed"),
    "data.confirm": ("Tôi hiểu dữ liệu hiện có sẽ bị thay thế", "I understand the data now loaded will be replaced"),
    "data.rebuild": ("Tạo lại dữ liệu mẫu", "Rebuild demo data"),
    "data.building": ("Đang tạo {n} khách hàng…", "Generating {n} customers…"),
    "data.built": ("Đã tạo {orders} đơn hàng cho {customers} khách trong {secs} giây.", "Built {orders} orders for {customers} customers in {secs} s."),
    "data.col.import_id": ("Mã", "ID"),
    "data.col.kind": ("Loại", "Kind"),
    "data.col.file_name": ("Tệp", "File"),
    "data.col.rows_loaded": ("Dòng đã nạp", "Rows loaded"),
    "data.col.rows_rejected": ("Dòng bị loại", "Rows rejected"),
    "data.col.mode": ("Chế độ", "Mode"),
    "data.col.started_at": ("Bắt đầu", "Started"),
    "data.col.status": ("Trạng thái", "Status"),
    "imp.title": ("Nhập dữ liệu", "Import a file"),
    "imp.help": (
        "Tải lên tệp CSV, TSV hoặc Excel (.xlsx). CSV có thể là UTF-8, UTF-16 hoặc Windows-1258, phân cách bằng , ; tab hoặc |. "
        "Cột được nhận theo tên tiêu đề (tiếng Việt hoặc tiếng Anh), không theo vị trí. Tệp được kiểm tra toàn bộ trước khi nạp; "
        "mỗi lần nạp là trọn vẹn hoặc không gì cả, và có thể hoàn tác.",
        "Upload a CSV, TSV or Excel (.xlsx) file. CSV may be UTF-8, UTF-16 or Windows-1258, separated by , ; tab or |. Columns are "
        "recognised by their header (Vietnamese or English), never by position. The whole file is checked before "
        "anything loads; every load is all or nothing, and can be undone.",
    ),
    "imp.file": ("Tệp", "File"),
    "imp.kind": ("Loại dữ liệu", "What the file holds"),
    "imp.mode": ("Cách nạp", "Mode"),
    "imp.preset": ("Định dạng", "Format"),
    "imp.preset.auto": ("Tự nhận diện", "Recognise from the headers"),
    "imp.preset.generic": ("Chung (theo tên cột)", "Generic (by column names)"),
    "imp.mode.append": ("Bổ sung (cập nhật theo mã)", "Append (update by key)"),
    "imp.mode.replace": ("Thay thế toàn bộ bảng", "Replace the whole table"),
    "imp.day_first": ("Ngày mơ hồ đọc theo dd/mm/yyyy", "Read ambiguous dates as dd/mm/yyyy"),
    "imp.check": ("Kiểm tra tệp", "Check the file"),
    "imp.checking": ("Đang đọc và kiểm tra…", "Reading and checking…"),
    "imp.step.reading": ("Đang đọc tệp…", "Reading the file…"),
    "imp.step.checking": ("Đang kiểm tra từng dòng…", "Checking every row…"),
    "imp.step.checked": ("Đã kiểm tra xong.", "Checked."),
    "imp.loading": ("Đang nạp vào cơ sở dữ liệu…", "Loading into the database…"),
    "imp.rejected_file": ("Tệp bị từ chối: {reason}", "File rejected: {reason}"),
    "imp.summary": ("{file}: đọc {read} dòng, {bad} dòng bị loại.", "{file}: {read} rows read, {bad} rejected."),
    "imp.mapping": ("Cột được nhận", "Columns recognised"),
    "imp.field": ("Trường", "Field"),
    "imp.header": ("Tiêu đề trong tệp", "Header in the file"),
    "imp.ignored": ("Các cột không dùng: {cols}", "Columns not used: {cols}"),
    "imp.mapping_needed": (
        "Không tìm thấy cột cho: {fields}. Hãy chọn cột tương ứng trong tệp (gợi ý ở đầu danh sách).",
        "No column found for: {fields}. Pick the matching column of the file (suggestions first).",
    ),
    "imp.remember": ("Ghi nhớ cách ghép cột này cho các tệp cùng tiêu đề", "Remember this mapping for files with the same headers"),
    "imp.apply_mapping": ("Áp dụng và kiểm tra lại", "Apply and check again"),
    "imp.counts": ("Lỗi theo quy tắc", "Problems by rule"),
    "imp.problems": ("Các ô bị loại (dòng theo số dòng trong tệp)", "Rejected cells (lines as numbered in the file)"),
    "imp.download": ("Tải báo cáo lỗi (CSV)", "Download the report (CSV)"),
    "imp.load": ("Nạp {n} dòng", "Load {n} rows"),
    "imp.accept_valid": ("Chỉ nạp các dòng hợp lệ; giữ dòng bị loại trong khu cách ly", "Load only the valid rows; keep the rejected ones in quarantine"),
    "imp.loaded": ("Đã nạp {n} dòng vào {table} (lần nhập #{id}).", "Loaded {n} rows into {table} (import #{id})."),
    "imp.nothing": ("Chưa nạp gì: tệp có dòng bị loại.", "Nothing loaded: the file has rejected rows."),
    "imp.undo": ("Hoàn tác một lần nhập", "Undo an import"),
    "imp.undo_pick": ("Lần nhập", "Import"),
    "imp.undo_button": ("Hoàn tác", "Undo"),
    "imp.undone": ("Đã hoàn tác lần nhập #{id}: xoá {removed} dòng, khôi phục {restored} dòng.", "Undid import #{id}: removed {removed} rows, restored {restored}."),
    "imp.undo_refused": ("Không thể hoàn tác: {reason}", "Cannot undo: {reason}"),
    "imp.quarantine": ("Khu cách ly ({n} dòng bị loại)", "Quarantine ({n} rejected rows)"),
    "col.line": ("Dòng", "Line"),
    "col.column": ("Cột", "Column"),
    "col.value": ("Giá trị", "Value"),
    "col.rule": ("Quy tắc", "Rule"),
    "col.reason": ("Lý do", "Reason"),
    "col.rows": ("Số dòng", "Rows"),
    "table.customers": ("Khách hàng", "Customers"),
    "table.orders": ("Đơn hàng", "Orders"),
    "table.survey_responses": ("Khảo sát", "Survey responses"),
    "table.loyalty_members": ("Thành viên", "Loyalty members"),
    "table.loyalty_events": ("Sự kiện điểm thưởng", "Loyalty events"),
    "table.referrals": ("Giới thiệu", "Referrals"),
    "table.programme_costs": ("Chi phí chương trình", "Programme costs"),
}


def t(key: str, lang: str, **values: object) -> str:
    """The string ``key`` in ``lang`` (``vi`` or ``en``), formatted with ``values``."""
    vi, en = STRINGS[key]
    s = vi if lang == "vi" else en
    return s.format(**values) if values else s


def label(prefix: str, code: str, lang: str) -> str:
    """A translated label for a data code (``channel.shopee``); unknown codes are shown
    as they are (data values such as a region name are never invented)."""
    key = f"{prefix}.{code}"
    return t(key, lang) if key in STRINGS else code
