// parse(): JSON conformance cases in the style of JSONTestSuite (written
// for this project): every document below is sent as the "data" of a body,
// {"accessKey":"k","data":<document>}, so the whole of RFC 8259 is
// exercised through the item path.
//   y_  must be accepted; the expected lines are given byte for byte (the
//       document minified: whitespace outside strings removed, nothing else
//       changed; a top-level array split into items);
//   n_  must be refused: invalid_json, or invalid_utf8 for bad UTF-8;
//   i_  implementation-defined in RFC 8259: the answer writeapi gives is
//       stated, and the reason is in lib/include/writeapi/parse.h.
// Every y_ and n_ case runs twice: compact, and after a line break and a
// long run of spaces, as pretty-printed bodies start.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "writeapi/parse.h"

using writeapi::ErrorCode;
using writeapi::ParsedRequest;
using writeapi::Status;

namespace {

std::string body_with(std::string_view document) {
  return std::string(R"({"accessKey":"k","data":)") + std::string(document) + "}";
}

// Every case runs compact and after a line break and 1 KiB of spaces (a
// whitespace run longer than the 16-byte steps it is skipped in).
const std::string kWalkPrefixes[] = {"", "\n" + std::string(1024, ' ')};

struct Accepted {
  const char* name;
  std::string document;
  std::string lines;
};

struct Refused {
  const char* name;
  std::string document;
  ErrorCode code;
};

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out.append(s);
  return out;
}

}  // namespace

TEST_CASE("parse JSON suite: y_ documents are accepted, byte-exact", "[parse][json-suite]") {
  const std::vector<Accepted> cases = {
      // Arrays (split into items).
      {"y_array_empty", "[]", ""},
      {"y_array_empty_with_whitespace", "[ \t\r\n ]", ""},
      {"y_array_with_one_number", "[1]", "1\n"},
      {"y_array_heterogeneous", R"([1,"a",true,false,{},[]])", "1\n\"a\"\ntrue\nfalse\n{}\n[]\n"},
      {"y_array_with_leading_space", " [1]", "1\n"},
      {"y_array_with_trailing_space", "[1] ", "1\n"},
      {"y_array_with_several_spaces", "[1 , 2\n,\t3 ]", "1\n2\n3\n"},
      {"y_array_nested_not_split", "[[1,[2]],[[]]]", "[1,[2]]\n[[]]\n"},
      {"y_array_of_arrays_pretty", "[\n  [\n    1,\n    2\n  ]\n]", "[1,2]\n"},
      {"y_array_of_empty_strings", R"(["",""])", "\"\"\n\"\"\n"},
      // Objects.
      {"y_object_empty", "{}", "{}\n"},
      {"y_object_empty_key", R"({"":0})", "{\"\":0}\n"},
      {"y_object_basic", R"({"asd":"sdf"})", "{\"asd\":\"sdf\"}\n"},
      {"y_object_duplicated_key_inside_item", R"({"a":"b","a":"c"})", "{\"a\":\"b\",\"a\":\"c\"}\n"},
      {"y_object_escaped_null_in_key", R"({"foo\u0000bar":42})", "{\"foo\\u0000bar\":42}\n"},
      {"y_object_extreme_numbers", R"({ "min": -1.0e+28, "max": 1.0e+28 })", "{\"min\":-1.0e+28,\"max\":1.0e+28}\n"},
      {"y_object_long_strings", R"({"x":[{"id": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}], "id": "y"})",
       "{\"x\":[{\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}],\"id\":\"y\"}\n"},
      {"y_object_simple_nested", R"({"a":{"b":{"c":[]}}})", "{\"a\":{\"b\":{\"c\":[]}}}\n"},
      {"y_object_with_newlines", "{\n\"a\": \"b\"\n}", "{\"a\":\"b\"}\n"},
      {"y_object_string_unicode_key", "{\"\xc3\xa9t\xc3\xa9\":1}", "{\"\xc3\xa9t\xc3\xa9\":1}\n"},
      {"y_object_deep_pretty",
       "{\n    \"a\": {\n        \"b\": {\n            \"c\": {\n                \"d\": [\n                    1,\n"
       "                    {\n                        \"e\": \"f g\"\n                    }\n                ]\n"
       "            }\n        }\n    }\n}",
       "{\"a\":{\"b\":{\"c\":{\"d\":[1,{\"e\":\"f g\"}]}}}}\n"},
      // Numbers, kept as written.
      {"y_number_0", "0", "0\n"},
      {"y_number_negative_zero", "-0", "-0\n"},
      {"y_number_minus_zero_fraction", "-0.0", "-0.0\n"},
      {"y_number_int_with_exp", "20e1", "20e1\n"},
      {"y_number_capital_E", "1E22", "1E22\n"},
      {"y_number_capital_E_neg_exp", "1E-2", "1E-2\n"},
      {"y_number_capital_E_pos_exp", "1E+2", "1E+2\n"},
      {"y_number_real_exponent", "123e45", "123e45\n"},
      {"y_number_real_fraction_exponent", "123.456e78", "123.456e78\n"},
      {"y_number_real_neg_exp", "1e-2", "1e-2\n"},
      {"y_number_real_pos_exponent", "1e+2", "1e+2\n"},
      {"y_number_simple_int", "123", "123\n"},
      {"y_number_simple_real", "123.456789", "123.456789\n"},
      {"y_number_trailing_zeros", "1.500", "1.500\n"},
      {"y_number_negative_int", "[-123]", "-123\n"},
      {"y_number_after_space", "[ 4]", "4\n"},
      {"y_number_in_object_before_brace", "{\"a\":1}", "{\"a\":1}\n"},
      {"y_number_zero_exp", "0e0", "0e0\n"},
      {"y_number_coordinates", "[[-122.4194155,37.7749295],[2.3522219,48.856614]]",
       "[-122.4194155,37.7749295]\n[2.3522219,48.856614]\n"},
      // Strings, escapes kept as written.
      {"y_string_1_2_3_bytes_UTF-8_sequences", "\"\\u0060\\u012a\\u12AB\"", "\"\\u0060\\u012a\\u12AB\"\n"},
      {"y_string_accepted_surrogate_pair", "\"\\uD801\\udc37\"", "\"\\uD801\\udc37\"\n"},
      {"y_string_allowed_escapes", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"\n"},
      {"y_string_backslash_and_u_escaped_zero", "\"\\\\u0000\"", "\"\\\\u0000\"\n"},
      {"y_string_comments", "\"a/*b*/c/*d//e\"", "\"a/*b*/c/*d//e\"\n"},
      {"y_string_double_escape_a", "\"\\\\a\"", "\"\\\\a\"\n"},
      {"y_string_in_array_with_leading_space", "[ \"asd\"]", "\"asd\"\n"},
      {"y_string_last_surrogates_1_and_2", "\"\\uDBFF\\uDFFF\"", "\"\\uDBFF\\uDFFF\"\n"},
      {"y_string_nonCharacterInUTF-8_U+FFFF", "\"\xef\xbf\xbf\"", "\"\xef\xbf\xbf\"\n"},
      {"y_string_nonCharacterInUTF-8_U+10FFFF", "\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"\n"},
      {"y_string_null_escape", "\"\\u0000\"", "\"\\u0000\"\n"},
      {"y_string_pi", "\"\xcf\x80\"", "\"\xcf\x80\"\n"},
      {"y_string_space", "\" \"", "\" \"\n"},
      {"y_string_whitespace_kept", "\"  a \\t b\\n  \"", "\"  a \\t b\\n  \"\n"},
      {"y_string_structural_chars_inside", "\"{[,:]}\"", "\"{[,:]}\"\n"},
      {"y_string_escaped_quote_then_structural", "[\"a\\\"]\", \"b\"]", "\"a\\\"]\"\n\"b\"\n"},
      {"y_string_backslash_run_before_quote", "[\"\\\\\\\\\",1]", "\"\\\\\\\\\"\n1\n"},
      {"y_string_utf8_emoji", "\"\xf0\x9f\x98\x80\"", "\"\xf0\x9f\x98\x80\"\n"},
      {"y_string_del_character",
       "\"a\x7f"
       "a\"",
       "\"a\x7f"
       "a\"\n"},
      {"y_string_long_with_escape_at_end", "\"" + std::string(300, 'x') + "\\n\"",
       "\"" + std::string(300, 'x') + "\\n\"\n"},
      // Literals.
      {"y_structure_lonely_true", "true", "true\n"},
      {"y_structure_lonely_false", "false", "false\n"},
      {"y_structure_literals_in_array", "[true , false]", "true\nfalse\n"},
      {"y_structure_true_in_array_then_object", "[true,{\"a\":false}]", "true\n{\"a\":false}\n"},
      // Whitespace.
      {"y_structure_whitespace_array", " \r\n\t[ \r\n\t] \r\n\t", ""},
      {"y_structure_trailing_newline", "[\"a\"]\n", "\"a\"\n"},
      {"y_structure_deep_indentation",
       "[\n" + repeat(" ", 200) + "{\n" + repeat(" ", 300) + "\"k\"\n" + repeat(" ", 300) + ":\n" + repeat("\t", 40) +
           "1}]",
       "{\"k\":1}\n"},
  };
  for (const std::string& prefix : kWalkPrefixes) {
    for (const Accepted& c : cases) {
      INFO(c.name << (prefix.empty() ? " (compact)" : " (after whitespace)") << ": " << c.document);
      ParsedRequest out;
      Status s = writeapi::parse(prefix + body_with(c.document), &out);
      INFO(s.name() << ": " << s.message());
      REQUIRE(s.ok());
      CHECK(out.lines == c.lines);
    }
  }
}

TEST_CASE("parse JSON suite: null documents and null items are null_data", "[parse][json-suite]") {
  for (const std::string& prefix : kWalkPrefixes) {
    for (const char* document : {"null", "[null]", "[1,null]", " null "}) {
      INFO(document);
      ParsedRequest out;
      CHECK(writeapi::parse(prefix + body_with(document), &out).code() == ErrorCode::null_data);
    }
  }
}

TEST_CASE("parse JSON suite: n_ documents are refused", "[parse][json-suite]") {
  const ErrorCode json = ErrorCode::invalid_json, utf8 = ErrorCode::invalid_utf8;
  const std::vector<Refused> cases = {
      // Arrays.
      {"n_array_1_true_without_comma", "[1 true]", json},
      {"n_array_colon_instead_of_comma", "[\"\": 1]", json},
      {"n_array_comma_after_close", "[\"\"],", json},
      {"n_array_comma_and_number", "[,1]", json},
      {"n_array_double_comma", "[1,,2]", json},
      {"n_array_extra_close", "[\"x\"]]", json},
      {"n_array_extra_comma", "[\"\",]", json},
      {"n_array_incomplete", "[\"x\"", json},
      {"n_array_incomplete_invalid_value", "[x", json},
      {"n_array_inner_array_no_comma", "[3[4]]", json},
      {"n_array_items_separated_by_semicolon", "[1:2]", json},
      {"n_array_just_comma", "[,]", json},
      {"n_array_just_minus", "[-]", json},
      {"n_array_missing_value", "[   , \"\"]", json},
      {"n_array_number_and_comma", "[1,]", json},
      {"n_array_star_inside", "[*]", json},
      {"n_array_unclosed", "[\"\"", json},
      {"n_array_unclosed_trailing_comma", "[1,", json},
      {"n_array_unclosed_with_object_inside", "[{}", json},
      {"n_array_newlines_unclosed", "[\"a\",\n4\n,1,", json},
      // Objects.
      {"n_object_bad_value", "[\"x\", truth]", json},
      {"n_object_bracket_key", "{[: \"x\"}", json},
      {"n_object_comma_instead_of_colon", "{\"x\", null}", json},
      {"n_object_double_colon", "{\"x\"::\"b\"}", json},
      {"n_object_garbage_at_end", "{\"a\":\"a\" 123}", json},
      {"n_object_key_with_single_quotes", "{key: 'value'}", json},
      {"n_object_missing_colon", "{\"a\" b}", json},
      {"n_object_missing_key", "{:\"b\"}", json},
      {"n_object_missing_semicolon", "{\"a\" \"b\"}", json},
      {"n_object_missing_value", "{\"a\":", json},
      {"n_object_no_colon", "{\"a\"", json},
      {"n_object_non_string_key", "{1:1}", json},
      {"n_object_repeated_null_null", "{null:null,null:null}", json},
      {"n_object_several_trailing_commas", "{\"id\":0,,,,,}", json},
      {"n_object_single_quote", "{'a':0}", json},
      {"n_object_trailing_comma", "{\"id\":0,}", json},
      {"n_object_trailing_comment", "{\"a\":\"b\"}/**/", json},
      {"n_object_two_commas_in_a_row", "{\"a\":\"b\",,\"c\":\"d\"}", json},
      {"n_object_unquoted_key", "{a: \"b\"}", json},
      {"n_object_unterminated_value", "{\"a\":\"a", json},
      {"n_object_with_trailing_garbage", "{\"a\": true} \"x\"", json},
      // Numbers.
      {"n_number_++", "[++1234]", json},
      {"n_number_+1", "[+1]", json},
      {"n_number_+Inf", "[+Inf]", json},
      {"n_number_-01", "[-01]", json},
      {"n_number_-1.0.", "[-1.0.]", json},
      {"n_number_-2.", "[-2.]", json},
      {"n_number_-NaN", "[-NaN]", json},
      {"n_number_.-1", "[.-1]", json},
      {"n_number_.2e-3", "[.2e-3]", json},
      {"n_number_0.1.2", "[0.1.2]", json},
      {"n_number_0.3e+", "[0.3e+]", json},
      {"n_number_0.3e", "[0.3e]", json},
      {"n_number_0.e1", "[0.e1]", json},
      {"n_number_0_capital_E+", "[0E+]", json},
      {"n_number_0e", "[0e]", json},
      {"n_number_1.0e+", "[1.0e+]", json},
      {"n_number_1.0e-", "[1.0e-]", json},
      {"n_number_1_000", "[1 000.0]", json},
      {"n_number_1eE2", "[1eE2]", json},
      {"n_number_2.e+3", "[2.e+3]", json},
      {"n_number_9.e+", "[9.e+]", json},
      {"n_number_Inf", "[Inf]", json},
      {"n_number_NaN", "[NaN]", json},
      {"n_number_U+FF11_fullwidth_digit_one", "[\xef\xbc\x91]", json},
      {"n_number_expression", "[1+2]", json},
      {"n_number_hex_1_digit", "[0x1]", json},
      {"n_number_infinity", "[Infinity]", json},
      {"n_number_invalid+-", "[0e+-1]", json},
      {"n_number_leading_zero", "[012]", json},
      {"n_number_minus_space_1", "[- 1]", json},
      {"n_number_neg_with_garbage_at_end", "[-1x]", json},
      {"n_number_real_garbage_after_e", "[1ea]", json},
      {"n_number_with_alpha", "[1.2a-3]", json},
      {"n_number_with_leading_zero_in_object", "{\"a\":00}", json},
      {"n_number_starting_with_dot", "[.123]", json},
      {"n_number_then_string", "[1\"a\"]", json},
      // Strings.
      {"n_string_1_surrogate_then_escape", "[\"\\uD800\\\"]", json},
      {"n_string_1_surrogate_then_escape_u", "[\"\\uD800\\u\"]", json},
      {"n_string_accentuated_char_no_quotes", "[\xc3\xa9]", json},
      {"n_string_backslash_00", std::string("[\"\\\0\"]", 6), json},
      {"n_string_escape_x", "[\"\\x00\"]", json},
      {"n_string_escaped_backslash_bad", "[\"\\\\\\\"]", json},
      {"n_string_escaped_ctrl_char_tab", "[\"\\\t\"]", json},
      {"n_string_escaped_emoji", "[\"\\\xf0\x9f\x8c\x80\"]", json},
      {"n_string_incomplete_escape", "[\"\\\"]", json},
      {"n_string_incomplete_escaped_character", "[\"\\u00A\"]", json},
      {"n_string_incomplete_surrogate", "[\"\\uD834\\uDd\"]", json},
      {"n_string_invalid_backslash_esc", "[\"\\a\"]", json},
      {"n_string_invalid_unicode_escape", "[\"\\uqqqq\"]", json},
      {"n_string_leading_uescaped_thinspace", "[\\u0020\"asd\"]", json},
      {"n_string_lone_low_surrogate", "[\"\\uDC00\"]", json},
      {"n_string_lone_high_surrogate", "[\"\\uD800\"]", json},
      {"n_string_high_surrogate_then_non_surrogate", "[\"\\uD800\\u0041\"]", json},
      {"n_string_no_quotes_with_bad_escape", "[\\n]", json},
      {"n_string_single_doublequote", "\"", json},
      {"n_string_single_quote", "['single quote']", json},
      {"n_string_start_escape_unclosed", "[\"\\", json},
      {"n_string_unescaped_ctrl_char",
       "[\"a\x01"
       "a\"]",
       json},
      {"n_string_unescaped_newline", "[\"new\nline\"]", json},
      {"n_string_unescaped_tab", "[\"\t\"]", json},
      {"n_string_unescaped_nul", std::string("[\"a\0a\"]", 7), json},
      {"n_string_unicode_CapitalU", "\"\\UA66D\"", json},
      {"n_string_with_trailing_garbage", "\"\"x", json},
      {"n_string_after_string_no_comma", "[\"a\" \"b\"]", json},
      // Invalid UTF-8 anywhere.
      {"n_string_invalid_utf8_byte", "[\"\xff\"]", utf8},
      {"n_string_overlong_sequence_2_bytes", "[\"\xc0\xaf\"]", utf8},
      {"n_string_overlong_sequence_6_bytes", "[\"\xfc\x83\xbf\xbf\xbf\xbf\"]", utf8},
      {"n_string_UTF8_surrogate_U+D800", "[\"\xed\xa0\x80\"]", utf8},
      {"n_string_truncated_utf8", "[\"\xe0\xff\"]", utf8},
      {"n_string_lone_continuation_byte", "[\"\x81\"]", utf8},
      {"n_string_utf8_above_U+10FFFF", "[\"\xf4\xbf\xbf\xbf\"]", utf8},
      {"n_structure_invalid_utf8_outside_string", "[\xff]", utf8},
      {"n_string_bad_utf8_after_unescaped_ctrl", "[\"\x01\", \"\xff\"]", utf8},
      // Structure and literals.
      {"n_structure_angle_bracket_.", "<.>", json},
      {"n_structure_angle_bracket_null", "[<null>]", json},
      {"n_structure_array_trailing_garbage", "[1]x", json},
      {"n_structure_array_with_extra_array_close", "[1]]", json},
      {"n_structure_ascii-unicode-identifier", "a\xc3\xa5", json},
      {"n_structure_capitalized_True", "[True]", json},
      {"n_structure_close_unopened_array", "1]", json},
      {"n_structure_comma_instead_of_closing_brace", "{\"x\": true,", json},
      {"n_structure_double_array", "[][]", json},
      {"n_structure_end_array", "]", json},
      {"n_structure_incomplete_UTF8_BOM", "\xef\xbb{}", utf8},
      {"n_structure_lone-open-bracket", "[", json},
      {"n_structure_no_data", "", json},
      {"n_structure_null-byte-outside-string", std::string("[\0]", 3), json},
      {"n_structure_number_with_trailing_garbage", "2@", json},
      {"n_structure_object_followed_by_closing_object", "{}}", json},
      {"n_structure_object_unclosed_no_value", "{\"\":", json},
      {"n_structure_object_with_comment", "{\"a\":/*comment*/\"b\"}", json},
      {"n_structure_open_array_apostrophe", "['", json},
      {"n_structure_open_object", "{", json},
      {"n_structure_single_star", "*", json},
      {"n_structure_trailing_#", "{\"a\":\"b\"}#{}", json},
      {"n_structure_U+2060_word_joined", "[\xe2\x81\xa0]", json},
      {"n_structure_uescaped_LF_before_string", "[\\u000A\"\"]", json},
      {"n_structure_unclosed_array_partial_null", "[ false, nul", json},
      {"n_structure_unclosed_array_unfinished_false", "[ true, fals", json},
      {"n_structure_unclosed_array_unfinished_true", "[ false, tru", json},
      {"n_structure_whitespace_formfeed", "[\x0c]", json},
      {"n_structure_whitespace_U+2060_word_joiner", "[\xe2\x81\xa0]", json},
      {"n_literal_truex", "[truex]", json},
      {"n_literal_nulll", "[nulll]", json},
      {"n_literal_false_then_digit", "[false1]", json},
      {"n_literal_true_then_string", "[true\"x\"]", json},
      {"n_structure_deep_unclosed", repeat("[", 500), json},
  };
  for (const std::string& prefix : kWalkPrefixes) {
    for (const Refused& c : cases) {
      INFO(c.name << (prefix.empty() ? " (compact)" : " (after whitespace)") << ": " << c.document);
      ParsedRequest out;
      Status s = writeapi::parse(prefix + body_with(c.document), &out);
      INFO(s.name() << ": " << s.message());
      CHECK(s.code() == c.code);
      CHECK(out.lines.empty());
    }
  }
}

TEST_CASE("parse JSON suite: i_ documents get the answers parse.h documents", "[parse][json-suite]") {
  // Numbers are checked against the grammar, never converted: any size is
  // kept exactly.
  for (const char* number : {"123123123123123123123123123123", "-123123123123123123123123123123", "1.5e999", "-1e-999",
                             "1e400", "100000000000000000000", "0.4e00669999999999999999999999"}) {
    INFO("i_number " << number);
    ParsedRequest out;
    REQUIRE(writeapi::parse(body_with(number), &out).ok());
    CHECK(out.lines == std::string(number) + "\n");
  }
  // An escaped surrogate must be part of a pair (as simdjson requires).
  for (const char* string : {"\"\\uDFAA\"", "\"\\uD800\\uD800\\n\"", "\"\\uDd1ea\"", "\"\\uD888\\u1234\""}) {
    INFO("i_string_lone_surrogate " << string);
    ParsedRequest out;
    CHECK(writeapi::parse(body_with(string), &out).code() == ErrorCode::invalid_json);
  }
  // Noncharacters and private-use code points are valid UTF-8: kept.
  for (const char* string : {"\"\xef\xb7\x90\"", "\"\xf3\xb0\x80\x80\"", "\"\\uFDD0\"", "\"\\uFFFE\""}) {
    INFO("i_string_noncharacter " << string);
    ParsedRequest out;
    REQUIRE(writeapi::parse(body_with(string), &out).ok());
    CHECK(out.lines == std::string(string) + "\n");
  }
  // A UTF-8 byte order mark before the body is ignored; anywhere else it
  // is an unexpected character.
  {
    ParsedRequest out;
    REQUIRE(writeapi::parse("\xef\xbb\xbf" + body_with("[1]"), &out).ok());
    CHECK(out.lines == "1\n");
    CHECK(writeapi::parse(body_with("\xef\xbb\xbf[1]"), &out).code() == ErrorCode::invalid_json);
  }
  // Nesting: the body object is depth 1; items may nest to max_depth.
  {
    ParsedRequest out;
    std::string deepest = repeat("[", 1022) + repeat("]", 1022);  // data array + 1022 = 1024 levels with the body
    REQUIRE(writeapi::parse(body_with("[" + deepest + "]"), &out).ok());
    CHECK(out.lines == deepest + "\n");
    std::string too_deep = repeat("[", 1024) + repeat("]", 1024);
    CHECK(writeapi::parse(body_with(too_deep), &out).code() == ErrorCode::too_deep);
  }
  // UTF-16 or UTF-32 bodies are not UTF-8.
  {
    ParsedRequest out;
    CHECK(writeapi::parse(std::string("\xff\xfe[\0]\0", 6), &out).code() == ErrorCode::invalid_utf8);
  }
}
